"""Certificates from an ACME CA with the operator's own client (issue 18).

- `issuer`: one certificate for a list of names over the `acme` library.
- `solvers`: how challenges are answered (DNS-01 through a DNS provider).
- `http01`: HTTP-01, the answers in a ConfigMap that vpes-web serves.
- `account`: the account key, kept in a Secret of the operator's namespace.
- `errors`: what can go wrong, as `CertificateReady` reasons and messages.
- `renewal`: when a certificate is renewed (pure).
"""
