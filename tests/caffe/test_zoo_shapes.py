"""Every zoo prototxt parses, and keraffe's shapes equal real Caffe's for each net Caffe can build.

The comparison: for every blob name, the shape of its last version in keraffe
(in-place layers make versions ``blob#k``) equals the shape real Caffe holds in
``net.blobs`` for that name, since Caffe keeps one blob per name and in-place
layers overwrite it; and every earlier version has that shape too, since it
is the same Caffe blob. Caffe's extra blobs are the ``*_split_*`` copies it
inserts where a blob feeds several layers; keraffe has none.

Real Caffe gets the original file wherever brocolli can read it (it upgrades
V0/V1 nets and reads ``ceil_mode`` itself). For the train/val nets of
``zoo_nets.LOAD_ARGS`` it gets keraffe's deploy version written in brocolli's
dialect (``format_prototxt(..., Dialect.FORK)``), because brocolli cannot open
their data sources. Nets brocolli cannot build as written are listed with the
reason in ``zoo_nets.EXCLUDED``, and that list is checked against the zoo; those
whose layers keraffe knows reach real Caffe in their BVLC spelling
(``keraffe.passes.bvlc_spelling``), where every original blob keeps its shape.
"""

from __future__ import annotations

import re

import pytest

from keraffe.caffe.net import load_net
from keraffe.caffe.prototxt import Dialect, format_prototxt, read_prototxt
from keraffe.caffe.shapes import has_rule
from keraffe.caffe.upgrade import upgrade_net
from keraffe.errors import UnsupportedLayerError
from zoo_nets import EXCLUDED, FIELDS_BROCOLLI_CANNOT_PARSE, LOAD_ARGS, ZOO

ZOO_NETS = sorted(str(p.relative_to(ZOO)) for p in ZOO.rglob("*.prototxt")) if ZOO.is_dir() else []
#: The zoo README promises 119 prototxts; a different count means the zoo changed.
ZOO_PROTOTXT_COUNT = 119


def _zoo_path(rel: str):
    if not ZOO.is_dir():
        pytest.skip(f"model zoo not found at {ZOO} (it lives beside the repository, in ../shared/zoo)")
    return ZOO / rel


def _nets_param():
    return ZOO_NETS or [pytest.param(None, marks=pytest.mark.skip(reason=f"model zoo not found at {ZOO}"))]


def last_versions(net) -> dict[str, tuple[int, ...]]:
    """Shape of the last version of each blob name: what Caffe's net.blobs holds."""
    last: dict[str, tuple[int, tuple[int, ...]]] = {}
    for tensor, shape in net.shapes.items():
        if tensor.blob not in last or tensor.version > last[tensor.blob][0]:
            last[tensor.blob] = (tensor.version, tuple(shape))
    return {blob: shape for blob, (_, shape) in last.items()}


def assert_shapes_equal(ours: dict, caffe: dict) -> None:
    caffe = {name: tuple(shape) for name, shape in caffe.items()}
    missing = sorted(set(ours) - set(caffe))
    assert not missing, f"blobs keraffe has and Caffe does not: {missing}"
    extra = sorted(b for b in set(caffe) - set(ours) if not re.search(r"_split_\d+$", b))
    assert not extra, f"blobs Caffe has and keraffe does not: {extra}"
    differ = {b: (ours[b], caffe[b]) for b in ours if ours[b] != caffe[b]}
    assert not differ, f"(keraffe, Caffe) shapes differ: {differ}"


def exclusion_reason(rel: str, caffe_types: set[str]) -> str | None:
    """Why a zoo net cannot be compared with real Caffe, or None (the rule behind EXCLUDED)."""
    net = load_net(ZOO / rel, infer_shapes=False, **LOAD_ARGS.get(rel, {}))
    types = {node.type for node in net.layers}
    parts = []
    lacking = sorted(types - caffe_types)
    if lacking:
        parts.append("not in brocolli: " + ", ".join(lacking))
    no_rule = sorted(k for k in {node.kind for node in net.layers} if not has_rule(k))
    if no_rule:
        parts.append("no keraffe shape rule: " + ", ".join(no_rule))
    fields = sorted({
        field for node in net.layers for (message, field) in FIELDS_BROCOLLI_CANNOT_PARSE
        if node.param.HasField(message) and getattr(node.param, message).HasField(field)
    })
    if fields:
        parts.append("fields brocolli cannot parse: " + ", ".join(fields))
    return "; ".join(parts) or None


# ------------------------------------------------------------------ without Caffe


def test_zoo_holds_the_expected_nets():
    _zoo_path("README.md")
    assert len(ZOO_NETS) == ZOO_PROTOTXT_COUNT
    assert set(LOAD_ARGS) <= set(ZOO_NETS)
    assert set(EXCLUDED) <= set(ZOO_NETS)


@pytest.mark.parametrize("rel", _nets_param())
def test_zoo_prototxt_parses_and_loads(rel):
    """Every prototxt parses and upgrades; keraffe infers shapes for every net whose layers it knows."""
    path = _zoo_path(rel)
    raw = read_prototxt(path)
    upgraded, _ = upgrade_net(raw, str(path))
    assert len(upgraded.layer) > 0 and not len(upgraded.layers)
    args = LOAD_ARGS.get(rel, {})
    # Types of the deploy net: data layers are replaced by Input, so they need no rule.
    deploy = load_net(path, infer_shapes=False, **args)
    unknown = sorted({node.type for node in deploy.layers if not has_rule(node.kind)})
    if not unknown:
        net = load_net(path, **args)
        assert all(t in net.shapes for node in net.layers for t in node.outputs)
        assert all(t in net.shapes for t in net.outputs)
        return
    # Nets with layers keraffe has no rule for: one error naming every such type.
    with pytest.raises(UnsupportedLayerError) as caught:
        load_net(path, **args)
    for type_name in unknown:
        assert f"  {type_name}: " in str(caught.value)


# ------------------------------------------------------------------ against Caffe


@pytest.mark.pycaffe
def test_zoo_exclusions_are_current():
    """The checked-in list of nets not compared with Caffe is exactly what the zoo implies now."""
    from keraffe.verify.caffe_runtime import pycaffe_layer_types

    _zoo_path("README.md")
    caffe_types = pycaffe_layer_types()
    computed = {rel: reason for rel in ZOO_NETS if (reason := exclusion_reason(rel, caffe_types))}
    assert computed == EXCLUDED


@pytest.mark.pycaffe
@pytest.mark.parametrize("rel", _nets_param())
def test_zoo_shapes_match_caffe(rel, tmp_path):
    from keraffe.verify.caffe_runtime import pycaffe_blob_shapes

    path = _zoo_path(rel)
    if rel in EXCLUDED:
        pytest.skip(f"not comparable with brocolli-caffe: {EXCLUDED[rel]}")
    net = load_net(path, **LOAD_ARGS.get(rel, {}))
    if rel in LOAD_ARGS:
        # A train/val net: Caffe gets keraffe's deploy version (brocolli cannot open data sources).
        given = tmp_path / "deploy_fork.prototxt"
        given.write_text(format_prototxt(net.to_net_parameter(), Dialect.FORK))
    else:
        given = path
    last = last_versions(net)
    assert_shapes_equal(last, pycaffe_blob_shapes(given))
    # Caffe keeps one blob per name, so every version of a name has the shape Caffe reports.
    differ = {str(t): (s, last[t.blob]) for t, s in net.shapes.items() if tuple(s) != last[t.blob]}
    assert not differ, f"in-place versions whose shape differs from the blob's final shape: {differ}"


#: Fork nets with a field no BVLC spelling covers (keraffe does not convert them either). Nets whose spelling
#: still holds types brocolli lacks (ROIPooling, Reorg, YOLO's detection outputs, Python layers) skip with those.
NOT_SPELLED = {
    "bayesian_segnet/bayesian_segnet_inference.prototxt": "Monte Carlo Dropout (sample_weights_test)",
}


def _spelled_nets():
    """Nets brocolli cannot build as written but keraffe loads: real Caffe gets their BVLC spelling."""
    chosen = [rel for rel, reason in EXCLUDED.items() if "no keraffe shape rule" not in reason]
    return sorted(chosen) or [pytest.param(None, marks=pytest.mark.skip(reason=f"model zoo not found at {ZOO}"))]


@pytest.mark.pycaffe
@pytest.mark.parametrize("rel", _spelled_nets())
def test_fork_net_shapes_match_caffe_through_bvlc_spelling(rel, tmp_path):
    """Fork layers spelled with layers brocolli has (keraffe.passes.bvlc_spelling) keep every original blob's shape.

    The spelling's own intermediate blobs (a Pad before a convolution, Tiles
    before a product) are Caffe's extras; every blob of the original net must
    be there with keraffe's shape.
    """
    from keraffe.caffe.seeded import attach_seeded_weights
    from keraffe.passes.bvlc_spelling import bvlc_spelling
    from keraffe.verify.caffe_runtime import pycaffe_blob_shapes

    if rel in NOT_SPELLED:
        pytest.skip(f"no BVLC spelling for its {NOT_SPELLED[rel]}")
    # Some spellings depend on the weights (how many blobs a fork BN holds); seeded ones will do.
    from keraffe.verify.caffe_runtime import pycaffe_layer_types

    net = attach_seeded_weights(load_net(_zoo_path(rel), **LOAD_ARGS.get(rel, {})), 0)
    spelled = bvlc_spelling(net)[0]
    lacking = sorted({layer.type for layer in spelled.layer} - pycaffe_layer_types())
    if lacking:
        pytest.skip(f"brocolli has no {', '.join(lacking)}, in any spelling")
    given = tmp_path / "spelled_fork.prototxt"
    given.write_text(format_prototxt(spelled, Dialect.FORK))
    caffe = pycaffe_blob_shapes(given)
    last = last_versions(net)
    missing = sorted(set(last) - set(caffe))
    assert not missing, f"blobs keraffe has and the spelled net lacks in Caffe: {missing}"
    differ = {b: (last[b], caffe[b]) for b in last if last[b] != caffe[b]}
    assert not differ, f"(keraffe, Caffe) shapes differ: {differ}"


def _rewritten_nets():
    """Comparable deploy nets whose upgrade changed the most: V0/V1 layers and ceil_mode pooling."""
    chosen = []
    for rel in ZOO_NETS:
        if rel in EXCLUDED or rel in LOAD_ARGS:
            continue
        text = (ZOO / rel).read_text(errors="replace")
        if "ceil_mode" in text or re.search(r"^\s*layers\s*\{", text, re.M):
            chosen.append(rel)
    return chosen or [pytest.param(None, marks=pytest.mark.skip(reason=f"model zoo not found at {ZOO}"))]


@pytest.mark.pycaffe
@pytest.mark.parametrize("rel", _rewritten_nets())
def test_keraffe_rewrite_means_the_same_to_caffe(rel, tmp_path):
    """keraffe's upgraded net, written back in brocolli's dialect, gets the same shapes in real Caffe."""
    from keraffe.verify.caffe_runtime import pycaffe_blob_shapes

    path = _zoo_path(rel)
    upgraded, _ = upgrade_net(read_prototxt(path), str(path))
    given = tmp_path / "upgraded_fork.prototxt"
    given.write_text(format_prototxt(upgraded, Dialect.FORK))
    assert_shapes_equal(last_versions(load_net(path)), pycaffe_blob_shapes(given))
