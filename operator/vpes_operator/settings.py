"""Operator settings: what the provider configures (chart values → environment)."""

from __future__ import annotations

import ipaddress
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from .quantity import QuantityError, parse_bytes, parse_quantity

ENV_PREFIX = "VPES_"


class OperatorSettings(BaseModel):
    """Platform settings, the third input of every builder besides the PMS and its plan.

    Each field can be set from the environment as VPES_<FIELD_NAME_UPPER>; list
    fields take a comma-separated value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant_image: str = Field(default="localhost/vpes-tenant:dev", description="Tenant image.")
    # Calendar and contacts (Radicale, images/dav): a second container of the tenant
    # pod on plans with features.calendar, with these requests and memory limit.
    dav_image: str = Field(default="localhost/vpes-dav:dev", description="CalDAV/CardDAV image.")
    dav_memory_request: str = Field(default="32Mi")
    dav_memory_limit: str = Field(default="128Mi")
    dav_cpu_request: str = Field(default="10m")
    image_pull_policy: str = Field(default="IfNotPresent")
    operator_namespace: str = Field(default="vpes-system")
    field_manager: str = Field(default="vpes-operator")
    # Names the customer's clients use; all served by the shared edge.
    mx_host: str = Field(default="mx.vpes.test", description="The edge's inbound MX name.")
    imap_host: str = Field(default="imap.vpes.test")
    smtp_host: str = Field(default="smtp.vpes.test")
    webmail_url: str = Field(default="https://webmail.vpes.test")
    panel_url: str = Field(default="https://panel.vpes.test")
    # Where tenants send outbound mail (the edge relay, Postfix relayhost form, e.g.
    # "[<release>-edge-relay.<ns>.svc.cluster.local]:587"): they log in there with SASL
    # over TLS. Empty: deliver directly.
    relay_host: str = Field(default="")
    # The relay's secret material: this many shard Secrets "<prefix>-<i>" in
    # operator_namespace (0: the relay is not deployed, no shards are written).
    relay_key_shards: int = Field(default=0, ge=0, le=256)
    relay_secret_prefix: str = Field(default="vpes-edge-relay")
    # The relay's state (GET, JSON); empty: nobody is held for an hourly limit.
    relay_status_url: str = Field(default="")
    relay_poll_seconds: float = Field(default=30.0, gt=0)
    # How soon a tenant tries the relay again with mail it deferred (Postfix's
    # minimal_backoff_time and queue_run_delay; the backoff still grows to 300 s).
    relay_retry_seconds: int = Field(default=60, ge=1, le=300)
    # Spam training (imapsieve at the tenant): the shared Rspamd's controller, e.g.
    # "http://<release>-antispam.<ns>.svc.cluster.local:11334"; empty: no training.
    # Its enable password is read from a file (a mounted Secret) at each reconcile
    # and handed to the tenants in their credentials Secret, never in a ConfigMap.
    antispam_controller_url: str = Field(default="")
    antispam_controller_password_file: str = Field(default="")
    # Pod labels of the Rspamd pods: a training tenant's egress reaches them on 11334.
    antispam_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {
            "app.kubernetes.io/part-of": "vpes",
            "vpes.io/component": "antispam",
        }
    )
    # What one tenant's learn spool (messages waiting for the controller) may hold
    # on its mail volume before the oldest are dropped.
    antispam_learn_spool_limit: str = Field(default="32Mi")
    # Sources trusted to send a PROXY protocol header / be the edge.
    edge_networks: tuple[str, ...] = Field(default=("10.0.0.0/8",))
    # Pod labels of the edge and of the operator (NetworkPolicy peers).
    edge_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"app.kubernetes.io/part-of": "vpes", "vpes.io/component": "edge"}
    )
    # Which edge pods (by their vpes.io/edge-role label) reach a tenant's mail ports:
    # those that forward clients' addresses to it. The relay only takes mail from
    # tenants (their egress reaches it), so it is not among them.
    edge_ingress_roles: tuple[str, ...] = Field(default=("mx", "proxy"), min_length=1)
    edge_relay_role: str = Field(default="relay")
    # Pod labels of vpes-web (in operator_namespace): the one peer that reaches a
    # calendar server's DAV port (it proxies https://<edge_web_host>/dav/ there).
    web_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {"vpes.io/component": "web"}, min_length=1
    )
    operator_pod_labels: dict[str, str] = Field(
        default_factory=lambda: {
            "app.kubernetes.io/part-of": "vpes",
            "vpes.io/component": "operator",
        }
    )
    cluster_dns_namespace: str = Field(default="kube-system")
    # The cluster's DNS domain: the edge reaches a tenant's Service at
    # <server>.<namespace>.svc.<cluster_domain>.
    cluster_domain: str = Field(default="cluster.local")
    # The customer panel: in every namespace with a server, the operator makes the
    # ServiceAccount the panel acts as for that customer (bound to
    # customer_cluster_role) and lets the panel's ServiceAccount impersonate it (bound
    # to panel_impersonate_cluster_role). Empty panel_service_account: no panel.
    panel_service_account: str = Field(default="")
    panel_namespace: str = Field(default="", description="Default: operator_namespace.")
    customer_cluster_role: str = Field(default="vpes-customer")
    panel_impersonate_cluster_role: str = Field(default="vpes-panel-impersonate")
    # The ConfigMap (in operator_namespace) holding the shared edge's maps.
    edge_maps_name: str = Field(default="vpes-edge-maps")
    # Annotations of a dedicated address's LoadBalancer Service: whatever the
    # provider's cloud needs to send PROXY protocol headers.
    dedicated_service_annotations: dict[str, str] = Field(default_factory=dict)
    bcrypt_rounds: int = Field(default=10, ge=4, le=15)
    dkim_selector: str = Field(default="vpes")
    dkim_key_bits: int = Field(default=2048)
    # Also sign with Ed25519 (RFC 8463), published under "<selector>-ed25519".
    dkim_ed25519: bool = Field(default=False)
    storage_class_name: str | None = Field(default=None)

    # -- DNS (issue 5): what every customer domain publishes, and where ----------
    # The provider a server uses unless its spec.dns.provider names another:
    # rfc2136, route53, external-dns or manual.
    dns_default_provider: str = Field(default="rfc2136")
    dns_ttl: int = Field(default=3600, ge=60, le=86400)
    # RFC 2136: the primary's address (host or host:port) and its TSIG key. The
    # key's secret (base64) comes from a file (a mounted Secret) or from a
    # Secret "<namespace>/<name>/<key>" the operator reads.
    dns_rfc2136_server: str = Field(default="")
    dns_rfc2136_tsig_name: str = Field(default="")
    dns_rfc2136_tsig_algorithm: str = Field(default="hmac-sha256")
    dns_rfc2136_tsig_secret_file: str = Field(default="")
    dns_rfc2136_tsig_secret_ref: str = Field(default="")
    # Route53: boto3's usual credentials; an endpoint URL for a stand-in.
    dns_route53_endpoint_url: str = Field(default="")
    dns_route53_region: str = Field(default="us-east-1")
    # Where the live checks ask (ip or ip:port); empty: the system's resolvers.
    dns_resolvers: tuple[str, ...] = Field(default=())
    dns_timeout: float = Field(default=3.0, gt=0)
    # The edge's outbound addresses (SPF ip4:/ip6:, DNSBL checks) and other
    # senders to include in SPF; "-all" or "~all" closes the SPF record.
    outbound_addresses: tuple[str, ...] = Field(default=())
    spf_includes: tuple[str, ...] = Field(default=())
    spf_all: Literal["-all", "~all"] = Field(default="-all")
    dmarc_policy: Literal["none", "quarantine", "reject"] = Field(default="quarantine")
    dmarc_rua: str = Field(default="", description="DMARC aggregate reports go here.")
    # MTA-STS ("off": no record); the edge serves the policy at mta-sts.<domain>.
    mta_sts_mode: Literal["enforce", "testing", "none", "off"] = Field(default="testing")
    mta_sts_max_age: int = Field(default=604800, ge=86400, le=31557600)
    tls_rpt_rua: str = Field(default="", description="TLS-RPT reports; empty: no record.")
    # The edge's web name: mta-sts, autoconfig, autodiscover and openpgpkey point here.
    edge_web_host: str = Field(default="web.vpes.test")
    # TLSA data ("3 1 1 <sha256>") of the edge MX's key, listed when a zone is signed.
    dane_tlsa: tuple[str, ...] = Field(default=())
    # DNS blocklists the outbound addresses are checked against.
    dnsbl_zones: tuple[str, ...] = Field(default=())
    # Re-verification: a kopf timer ticks; a check runs when due. Failing
    # checks back off from min to max; passing ones repeat every ok interval.
    dns_verify_tick: float = Field(default=15.0, gt=0)
    # Attempts to remove a deleted server's records before the deletion goes on
    # and what is left is reported (5 s doubling to 5 min between attempts).
    dns_cleanup_attempts: int = Field(default=20, ge=1, le=100)
    dns_verify_min_interval: float = Field(default=30.0, gt=0)
    dns_verify_max_interval: float = Field(default=3600.0, gt=0)
    dns_verify_ok_interval: float = Field(default=21600.0, gt=0)

    # -- Backups (issue 6): restic repositories in one S3 bucket, one per server ----
    # Empty bucket: backups are not configured (BackupHealthy says so).
    backup_s3_bucket: str = Field(default="")
    backup_s3_endpoint: str = Field(default="", description="S3 endpoint URL; empty: AWS.")
    # The endpoint as backup pods reach it, when it differs from the operator's view.
    backup_job_s3_endpoint: str = Field(default="")
    # The networks backup pods may reach S3 at (their NetworkPolicy); empty: the
    # addresses the job endpoint's host resolves to as each Job starts. Needed
    # where S3 answers from a changing pool (AWS: the region's S3 prefixes).
    backup_s3_egress_cidrs: tuple[str, ...] = Field(default=())
    backup_s3_region: str = Field(default="us-east-1")
    backup_s3_prefix: str = Field(default="vpes")
    # "<namespace>/<name>" of a Secret with keys access-key-id and secret-access-key:
    # the provider's keys, which only the operator holds.
    backup_s3_credentials_secret: str = Field(default="")
    # "bucket": each server's repository in a bucket of its own (named
    # "<bucket>-<20 hex>"), and each Job gets the key of an IAM user whose policy
    # reaches that bucket only (the operator's keys need IAM for that).
    # "shared": every repository under the one bucket, and the Jobs carry the
    # provider's keys (for an S3 without IAM: a Job's pod can then delete any
    # customer's backups).
    backup_s3_isolation: Literal["bucket", "shared"] = Field(default="bucket")
    # The IAM API (users, policies, access keys); empty: the S3 endpoint when
    # one is set (MinIO-like and test servers), else AWS IAM.
    backup_s3_iam_endpoint: str = Field(default="")
    backup_image: str = Field(default="localhost/vpes-backup:dev")
    # How long a deleted server's backups (and their key) are kept; 0: removed with it.
    backup_retention_after_delete_days: float = Field(default=30.0, ge=0)
    # A scheduled backup that has not completed this long after it was due is missed.
    backup_grace_seconds: float = Field(default=3600.0, gt=0)
    backup_job_deadline_seconds: int = Field(default=6 * 3600, ge=60)
    backup_job_memory_limit: str = Field(default="512Mi")
    # How often backups, restores and schedules are looked at.
    backup_tick: float = Field(default=5.0, gt=0)
    backup_schedule_tick: float = Field(default=60.0, gt=0)
    # How often a running FleetUpgrade is advanced (its health gate looked at), and how
    # long the gate waits for a server's SMTP banner and IMAP greeting.
    fleet_tick: float = Field(default=10.0, gt=0)
    fleet_probe_timeout: float = Field(default=5.0, gt=0)
    # The edge's antispam Deployment (in operator_namespace; the chart's
    # <release>-antispam): an antispam FleetUpgrade moves it to new rules. Its rules
    # live in "<it>-rules"; the canary is "<it>-canary" reading "<it>-rules-canary".
    # Empty: the chart runs no antispam.
    antispam_deployment: str = Field(default="")
    # How often deleted servers' repositories are checked for the end of their retention.
    backup_sweep_seconds: float = Field(default=3600.0, gt=0)
    # How often the kubelet asks a tenant pod whether its SMTP port answers: a
    # started pod turns Ready (and its server Ready) at the first answer after that.
    tenant_readiness_period_seconds: int = Field(default=10, ge=1, le=60)
    # Nodes that tenant pods (and their backup jobs) run on.
    tenant_node_selector: dict[str, str] = Field(default_factory=dict)
    # How often servers' children are checked for deletion or edits by hand
    # (drift); a drifted server is reconciled again within about this time.
    drift_interval_seconds: float = Field(default=120.0, gt=0)
    # How often the tenants' Pending pods are looked at for what keeps them from
    # running (a missing image, no node, an unbound volume claim).
    pod_check_seconds: float = Field(default=30.0, gt=0)
    # How often each running server's storage is measured in its pod (status.usage,
    # StorageHealthy), with how many pods asked at once.
    usage_interval_seconds: float = Field(default=300.0, gt=0)
    usage_concurrency: int = Field(default=4, ge=1, le=64)
    # StorageHealthy warns when the mail volume is this full (percent of its size).
    storage_warning_percent: float = Field(default=85.0, gt=0, le=100)

    # -- Certificates (issue 18): the operator's own ACME client (certs/) ----------
    # The CA's directory URL, e.g. https://acme-v02.api.letsencrypt.org/directory;
    # empty: the operator requests no certificates itself.
    acme_directory_url: str = Field(default="")
    # The account's contact address (the CA writes about expiring certificates and
    # policy changes); empty: an account without contact.
    acme_email: str = Field(default="")
    # A PEM file of the CA certificates to trust for the directory's HTTPS (a
    # private or test CA such as Pebble); empty: the system's trusted CAs.
    acme_ca_bundle: str = Field(default="")
    # Renew once less than this part of a certificate's lifetime is left.
    acme_renew_before_fraction: float = Field(default=1 / 3, gt=0, lt=1)
    # HTTP-01 (certs/http01.py): the ConfigMap (in operator_namespace) the answers go
    # into, token -> key authorization, which vpes-web watches and serves at
    # /.well-known/acme-challenge/<token> for any host.
    acme_http01_configmap: str = Field(
        default="vpes-acme-http01",
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",  # a ConfigMap's name (DNS subdomain)
    )
    # Where the operator checks that vpes-web serves an answer before telling the CA
    # (e.g. http://127.0.0.1:8080); empty: at each ready pod of vpes-web's Service
    # (web_service_name in operator_namespace, from its EndpointSlices).
    acme_http01_check_url: str = Field(default="")
    # How the CA checks that the operator controls a name: "dns-01" (the
    # _acme-challenge TXT records through the default DNS provider, RFC 2136) or
    # "http-01" (answered by vpes-web at the edge).
    acme_challenge: Literal["dns-01", "http-01"] = Field(default="dns-01")
    # Orders under way at once (each takes seconds at the CA, in a thread of its own).
    acme_concurrency: int = Field(default=2, ge=1, le=16)
    # The edge's own mail names, certified together into the kubernetes.io/tls Secret
    # edge_tls_secret of operator_namespace (the edge's pods mount it); empty: the
    # MX, IMAP and SMTP names (mx_host, imap_host, smtp_host). Empty edge_tls_secret:
    # the edge's names are not certified.
    edge_tls_names: tuple[str, ...] = Field(default=())
    edge_tls_secret: str = Field(default="vpes-edge-tls", max_length=253)

    # -- Certificates through cert-manager (issue 18) -------------------------------
    # The issuer every Certificate of the hosted domains' web names names; empty: no
    # Certificates (CertificateReady says certificates are not configured). Used only
    # where cert-manager's Certificate CRD is installed.
    cert_manager_issuer_name: str = Field(default="")
    cert_manager_issuer_kind: Literal["Issuer", "ClusterIssuer"] = Field(default="ClusterIssuer")
    cert_manager_issuer_group: str = Field(default="cert-manager.io")
    # vpes-web's Service (in operator_namespace) the per-server Ingresses route to;
    # empty: vpes-web is not installed, so no certificates either.
    web_service_name: str = Field(default="")
    web_service_port: int = Field(default=80, ge=1, le=65535)
    # The Ingress class of the per-server Ingresses; empty: the cluster's default class.
    web_ingress_class: str = Field(default="")
    # How often the Certificates' status is read (CertificateReady, the expiry metric),
    # and how often whether cert-manager is installed is asked again.
    certificates_poll_seconds: float = Field(default=60.0, gt=0)
    certificates_crd_check_seconds: float = Field(default=300.0, gt=0)

    @field_validator("backup_s3_egress_cidrs")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """Each a network (an address alone is a /32 or /128), written canonically."""
        try:
            return tuple(str(ipaddress.ip_network(v, strict=False)) for v in value)
        except ValueError as e:
            raise ValueError(f"backup.s3.egressCIDRs: {e}") from e

    @field_validator("dav_memory_request", "dav_memory_limit")
    @classmethod
    def _bytes(cls, value: str, info: ValidationInfo) -> str:
        """A byte quantity the kubelet takes (25Mi, 1G)."""
        try:
            parse_bytes(value)
        except QuantityError as e:
            raise ValueError(f"{info.field_name}: {e}") from e
        return value

    @field_validator("dav_cpu_request")
    @classmethod
    def _cpu(cls, value: str, info: ValidationInfo) -> str:
        """A CPU quantity (10m, 0.5, 1)."""
        try:
            amount = parse_quantity(value)
        except ValueError:
            amount = None
        if amount is None or amount <= 0:
            raise ValueError(f"{info.field_name}: {value!r} is not a CPU amount such as 10m or 0.5")
        return value

    @model_validator(mode="after")
    def _dav_fits(self) -> OperatorSettings:
        """The API server refuses a container whose request is over its limit."""
        if parse_bytes(self.dav_memory_request) > parse_bytes(self.dav_memory_limit):
            raise ValueError(
                f"dav_memory_request ({self.dav_memory_request}) is more than "
                f"dav_memory_limit ({self.dav_memory_limit})"
            )
        return self

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name, field in cls.model_fields.items():
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is None:
                continue
            ann = str(field.annotation)
            if "tuple" in ann:
                values[name] = tuple(v.strip() for v in raw.split(",") if v.strip())
            elif "dict" in ann:
                values[name] = dict(item.split("=", 1) for item in raw.split(",") if "=" in item)
            else:
                values[name] = raw
        return cls.model_validate(values)
