"""keraffe.names: the one rule every writer of layer and blob names uses to keep them unique."""

from keraffe.names import unused_name


def test_a_free_name_is_kept_and_a_taken_one_gets_the_first_free_suffix():
    assert unused_name("conv", {"pool"}) == "conv"
    assert unused_name("conv", {"conv", "conv_1"}) == "conv_2"
    assert unused_name("conv", {"conv", "conv_2"}, first_suffix=2) == "conv_3"
