"""Names vulture (the dead-code check of scripts/test.sh, [tool.vulture] in pyproject.toml) cannot see used:
what a framework, a protocol or another program calls or reads by name. Flask views, error handlers and context
processors, and pytest fixtures, are recognised by their decorators instead."""

# gunicorn reads these settings and calls these hooks by name from gunicorn.conf.py
bind
workers
worker_class
threads
graceful_timeout
keepalive
accesslog
access_log_format
errorlog
control_socket_disable
worker_connections
logger_class
when_ready
on_starting
post_worker_init
child_exit
on_exit
worker_exit
_.nr_conns  # gunicorn's ThreadWorker counts its connections (gunicorn.conf.py PromptThreadWorker)

# MLflow calls a pyfunc model's load_context (src/batch/pyfunc.py)
load_context
# prometheus_client reads values.ValueClass (src/monitoring/metrics.py remember_process_id)
_.ValueClass
# numpy: an array made read-only (src/answers/bands.py)
_.writeable
# argparse reads the parser's prog (src/pipeline/retrain.py)
_.prog
# werkzeug reads the URL map's merge_slashes (app.py)
_.merge_slashes
# Flask's g, read back with g.get("monitoring_excluded") (src/web/monitoring.py)
_.monitoring_excluded
# arguments a caller passes by protocol: blinker's sender, socket.shutdown's how
sender
how

# pytest hooks and module marks (tests/)
pytest_terminal_summary
pytest_sessionfinish
pytest_collection_modifyitems
pytest_configure
pytestmark
# http.server calls its handler's do_GET, do_POST and log_message (tests/lifecycle/test_decision.py, ...)
do_GET
do_POST
log_message
# shlex reads its lexer's settings (tests/test_docs.py)
_.whitespace_split
_.commenters
# a benchmark's record written out field by field with dataclasses.asdict (bench/kill_worker.py)
duration_s

# unused, on their way out of src/answers and src/batch
top_evidence
FIELD_KINDS
REJECT_COLUMNS
