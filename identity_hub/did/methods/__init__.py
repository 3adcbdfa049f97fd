"""One module per DID method: `key`, `jwk` and long-form `ion` resolve offline; `web` and
`universal` use the guarded HTTP client."""
