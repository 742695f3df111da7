"""``python -m or_synth.generate``: the training-set export under its old name, the same command as
:mod:`or_synth.export` (same config, same outputs)."""

from or_synth.export import ExportRefused, export, load_config, main

__all__ = ["ExportRefused", "export", "load_config", "main"]

if __name__ == "__main__":
    main()
