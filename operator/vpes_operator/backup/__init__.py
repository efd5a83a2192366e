"""Backups and restores: restic repositories in S3, one per server, run as Jobs."""
