"""The small per-face settings every CLI test runs with (one list, so they cannot drift apart)."""

TINY = ["align.output_size=128", "pose_sweep.image_size=64", "profile.image_size=64", "ae_optimize.steps=2",
        "ae_optimize.batch_size=4", "export.mesh_resolution=32", "export.render_size=64",
        "export.texture_size=64", "export.turntable_frames=3",
        "export.likeness=off"]  # dlib costs ~2 s a face; tests/test_cli_e2e.py and test_likeness.py turn it on
