"""The `keraffe` console command's entry point (kept so that installed scripts naming it keep working)."""


def main() -> None:
    from keraffe.cli.main import entry_point

    entry_point()
