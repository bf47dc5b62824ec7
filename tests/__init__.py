"""The test suite. A package so that its shared modules import as ``tests.helpers…`` from any test."""
