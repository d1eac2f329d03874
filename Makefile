# Shorthands for the README's commands; dev.py needs only Python 3.
.PHONY: demo test test-long format
demo:
	python3 dev.py demo
test:
	python3 dev.py test
test-long:
	python3 dev.py test-long
format:
	.venv/bin/python -m isort tfee tests examples benchmarks dev.py setup.py
	.venv/bin/python -m black tfee tests examples benchmarks dev.py setup.py
