"""streamd's test suite, grouped as the package is: core, runtime, tools, training, e2e, deploy."""
