"""The S3 server of the backup tests (moto's, on loopback): see vpes_devcluster.s3."""

from vpes_devcluster.s3 import S3Server

__all__ = ["S3Server"]
