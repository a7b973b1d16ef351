"""Stage functions: ``run_<stage>(...)`` read upstream stage folders, write their own (DESIGN.md §2)."""
