"""The faces of Flywheel: the `flywheel` command line, the demo and the rendering of tables.
Built on the flows, the loop and the core; the only layer (besides the tests) that uses `sim`.

A face starts the process, so it sets the offline switches before Prefect, MLflow or Hugging
Face load (the console script imports this package first)."""

from flywheel._offline import apply_offline_defaults

apply_offline_defaults()
