"""``flywheel serve``: the HTTP face a live product talks to (SPEC, "Live service").

FastAPI on uvicorn. The routes only translate: feedback goes through ``flywheel.feedback.ingest``
(the same checks as ``flywheel ingest``), the champion through ``flywheel.serving``, the ask policy
through ``loop.ask``. ``main.create_app`` builds the app; ``runner.run`` serves it with N workers.
"""
