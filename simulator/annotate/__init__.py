"""probseg-annotate: user studies in a browser (see cli.py for the commands).

Modules: ``study`` (the TOML file, Latin-square plans), ``human_session`` (one case with a person in
the loop, the simulator's session), ``store`` (the SQLite log), ``service`` (plans, live cases and the log,
without HTTP), ``server`` (the FastAPI app), ``export``, ``replay``, ``effort_fit`` and ``cli``; the page
is ``static/index.html`` and ``static/app.js``. Importing this package imports no web framework.
"""
