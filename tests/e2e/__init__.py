"""End-to-end tests with the real Prometheus and Alertmanager (a package, so its conftest is not `conftest`)."""
