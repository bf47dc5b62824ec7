"""Files shipped with the package: the state DDL (``sql/state``), the webhook tables (``sql/webhooks``), and the
default queries (``sql/users``, ``sql/events``, ``sql/cohorts``) and mappings (``mappings/*.toml``) that a
deployment's own files override. Resolved by :mod:`etl.resources`."""
