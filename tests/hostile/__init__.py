"""The hostile-input suite (issue 17, docs/SECURITY.md): one test per case of what a client, a pool, a receiver
or another local process may send."""
