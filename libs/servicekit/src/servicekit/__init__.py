"""The small kit every service of the stack shares. It never imports a service."""
