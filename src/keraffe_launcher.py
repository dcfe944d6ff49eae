"""The `keraffe` console command's entry point.

It lives outside the keraffe package so it can ask keraffe not to load Keras
before the package is imported: commands that only read and write Caffe files
then start in a fraction of a second instead of loading TensorFlow.
"""

import os


def main() -> None:
    os.environ.setdefault("KERAFFE_LAZY_KERAS", "1")
    from keraffe.cli.main import entry_point

    entry_point()
