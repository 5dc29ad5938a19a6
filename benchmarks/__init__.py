"""Benchmarks that print figures (``python -m benchmarks.NAME --help``); see README.md here.

They are not tests: nothing here asserts a speed.  ``tests/test_benchmarks.py`` only runs
each one at tiny sizes to prove that it runs.
"""
