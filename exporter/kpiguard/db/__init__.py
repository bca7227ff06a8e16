"""Storage: models, engine and migrations, the same schema on SQLite and PostgreSQL."""
