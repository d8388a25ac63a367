"""BPMN files: load, validate, version and parse them once per version.

Import rule: SpiffWorkflow, lxml, RestrictedPython, `app.extensions` and `app.models` (the
version store only); nothing else of `app`. `chatflow check` validates files with no app,
database or Redis, and the engine builds on this package, never the other way round.
"""
