"""Sign-in through external OpenID Connect providers (docs/sign-in.md)."""
