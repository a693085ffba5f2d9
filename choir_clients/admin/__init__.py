"""choir-admin: the operator's commands, on the store or over the admin API."""
