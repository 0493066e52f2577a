"""The commands of ``flywheel``, a module a group. A module defines its commands (a group module
also its sub-app, ``kb_app`` ...); :mod:`app.cli` alone puts them on the ``flywheel`` app."""
