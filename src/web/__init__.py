"""Flask blueprints and error handlers for the teachers' form and the JSON API."""
