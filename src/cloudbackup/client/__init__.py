"""The API client: the `cloudbackup agents|configs|backups|restores|events` commands and the
calls they (and the web console) make."""
