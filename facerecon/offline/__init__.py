"""The offline default backends: they run on a CPU with only what pip installs (DESIGN.md §1).

Each stands in for a thesis backend of the same stage (``facerecon.gan``, ``facerecon.diffusion``)
behind the same protocol (``facerecon.stages.base``); ``facerecon.registry`` names them.
"""
