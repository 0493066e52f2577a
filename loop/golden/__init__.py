"""The golden set's lifecycle: proposals from feedback and the drafting model, review, versions,
coverage. Plain steps, no Prefect: the CLI and the ``golden-review`` flow call them."""
