"""Tooling that runs the course itself: the HTML course book and the nbgrader pipeline.

Not part of the technique library: nothing under :mod:`vizlib.course` is imported by the
lectures.
"""
