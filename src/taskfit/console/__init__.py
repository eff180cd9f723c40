"""The web console (``taskfit console``): runs, comparisons, reports, a launch form, a playground, the model
registry and alerts, served on the same FastAPI stack and behind the same API keys as ``taskfit serve``.

Modules: ``runs`` (reading run directories safely), ``launch`` (the form from the recipe schema, validation,
training subprocesses), ``router`` (the routes). The pages are static files in ``static/`` (plain HTML and
JavaScript, plotly.js from the installed plotly wheel) that fetch everything through the JSON APIs.
"""

from taskfit.console.router import console_router

__all__ = ["console_router"]
