"""The faces of Flywheel: the `flywheel` command line, the demo and the rendering of tables.
Built on the flows, the loop and the core; the only layer (besides the tests) that uses `sim`."""
