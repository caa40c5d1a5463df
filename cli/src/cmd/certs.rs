//! `cairn certs`: a development CA and the certificates of members, agents and users,
//! each naming its holder with one `urn:cairn:<kind>:<name>` URI (see
//! `cairn_proto::tls`). Production clusters use the operator's own CA: any certificate
//! that carries the same URI works.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use cairn_proto::tls::Identity;
use clap::{Subcommand, ValueEnum};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

#[derive(Subcommand)]
pub enum CertsCmd {
    /// Make a CA and the certificates of a development cluster in a directory: members
    /// 1..N, the named agents, the user `admin` (role admin) and the named users (role
    /// operator).
    Init {
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// How many members to issue certificates for.
        #[arg(long, default_value_t = 3)]
        members: u64,
        /// An agent's node name (repeatable).
        #[arg(long = "agent")]
        agents: Vec<String>,
        /// A user name, with the role operator (repeatable; the user `admin`, with the
        /// role admin, is always made).
        #[arg(long = "user")]
        users: Vec<String>,
        /// Host names and IP addresses members are reached at (repeatable; default:
        /// localhost, 127.0.0.1, ::1).
        #[arg(long = "san")]
        sans: Vec<String>,
        /// How long the certificates are valid.
        #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
        valid_for: std::time::Duration,
    },
    /// Issue one more certificate with the CA in `--dir`.
    Issue {
        kind: Kind,
        /// The member's node id, the agent's node name or the user's name.
        name: String,
        /// A user's role.
        #[arg(long, default_value = "viewer", value_parser = ["viewer", "operator", "admin"])]
        role: String,
        #[arg(long, default_value = "certs")]
        dir: PathBuf,
        /// Host names and IP addresses the holder is reached at (repeatable; default
        /// for members and agents: localhost, 127.0.0.1, ::1).
        #[arg(long = "san")]
        sans: Vec<String>,
        #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
        valid_for: std::time::Duration,
        /// Valid from this long ago (negative validity tests use it with a short
        /// --valid-for; default: now).
        #[arg(long, value_parser = humantime::parse_duration)]
        backdate: Option<std::time::Duration>,
        /// Valid only from this long from now on.
        #[arg(long, value_parser = humantime::parse_duration)]
        postdate: Option<std::time::Duration>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Member,
    Agent,
    User,
}

const CA_CERT: &str = "ca.crt";
const CA_KEY: &str = "ca.key";

pub fn run(cmd: CertsCmd) -> anyhow::Result<()> {
    match cmd {
        CertsCmd::Init {
            dir,
            members,
            agents,
            users,
            sans,
            valid_for,
        } => {
            if dir.join(CA_KEY).exists() {
                bail!(
                    "{} already holds a CA; issue more certificates with `cairn certs issue`",
                    dir.display()
                );
            }
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let now = OffsetDateTime::now_utc();
            let (ca_params, ca_key) = make_ca(&dir, now, valid_for)?;
            let issuer = Issuer::new(ca_params, ca_key);
            let window = (now, now + to_time(valid_for)?);
            let mut made = vec![CA_CERT.to_string()];
            for id in 1..=members {
                made.push(issue(
                    &dir,
                    &issuer,
                    Identity::Member(id),
                    None,
                    &sans,
                    window,
                )?);
            }
            for a in agents {
                made.push(issue(
                    &dir,
                    &issuer,
                    identity(Kind::Agent, &a)?,
                    None,
                    &sans,
                    window,
                )?);
            }
            let admin = Identity::User("admin".into());
            made.push(issue(&dir, &issuer, admin, Some("admin"), &[], window)?);
            for u in users.iter().filter(|u| *u != "admin") {
                let id = identity(Kind::User, u)?;
                made.push(issue(&dir, &issuer, id, Some("operator"), &[], window)?);
            }
            println!("in {}: {}", dir.display(), made.join(", "));
            println!(
                "keep {} secret: whoever holds it can issue any identity",
                dir.join(CA_KEY).display()
            );
            Ok(())
        }
        CertsCmd::Issue {
            kind,
            name,
            role,
            dir,
            sans,
            valid_for,
            backdate,
            postdate,
        } => {
            let id = identity(kind, &name)?;
            let issuer = load_ca(&dir)?;
            let now = OffsetDateTime::now_utc();
            let start = match (backdate, postdate) {
                (Some(_), Some(_)) => bail!("--backdate and --postdate exclude each other"),
                (Some(b), None) => now - to_time(b)?,
                (None, Some(p)) => now + to_time(p)?,
                (None, None) => now,
            };
            let role = (kind == Kind::User).then_some(role.as_str());
            let window = (start, start + to_time(valid_for)?);
            let file = issue(&dir, &issuer, id, role, &sans, window)?;
            println!("{}", dir.join(file).display());
            Ok(())
        }
    }
}

fn to_time(d: std::time::Duration) -> anyhow::Result<Duration> {
    Duration::try_from(d).context("the duration is too long")
}

fn identity(kind: Kind, name: &str) -> anyhow::Result<Identity> {
    let id = match kind {
        Kind::Member => Identity::Member(
            name.parse()
                .with_context(|| format!("a member is named by its node id, not {name:?}"))?,
        ),
        Kind::Agent => Identity::Agent(name.to_string()),
        Kind::User => Identity::User(name.to_string()),
    };
    // The URN must read back as the same identity (names are checked there).
    if Identity::from_urn(&id.urn()).as_ref() != Some(&id) {
        bail!("{name:?} is not a valid {kind:?} name (letters, digits, '-', '.', '_', '@'; member ids > 0)");
    }
    Ok(id)
}

fn make_ca(
    dir: &Path,
    now: OffsetDateTime,
    valid_for: std::time::Duration,
) -> anyhow::Result<(CertificateParams, KeyPair)> {
    let key = KeyPair::generate().context("generating the CA key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, "Cairn development CA");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now;
    // The CA outlives what it issues by a day.
    params.not_after = now + to_time(valid_for)? + Duration::days(1);
    let cert = params.self_signed(&key).context("signing the CA")?;
    write_file(&dir.join(CA_CERT), &cert.pem(), false)?;
    write_file(&dir.join(CA_KEY), &key.serialize_pem(), true)?;
    Ok((params, key))
}

fn load_ca(dir: &Path) -> anyhow::Result<Issuer<'static, KeyPair>> {
    let read = |f: &str| {
        std::fs::read_to_string(dir.join(f)).with_context(|| {
            format!(
                "reading {} (made by `cairn certs init`)",
                dir.join(f).display()
            )
        })
    };
    let key = KeyPair::from_pem(&read(CA_KEY)?).context("reading the CA key")?;
    Issuer::from_ca_cert_pem(&read(CA_CERT)?, key).context("reading the CA certificate")
}

/// The file stem of an identity's certificate and key.
pub fn file_stem(id: &Identity) -> String {
    match id {
        Identity::Member(n) => format!("member-{n}"),
        Identity::Agent(n) => format!("agent-{n}"),
        Identity::User(n) => format!("user-{n}"),
    }
}

/// Issue `id`'s certificate (a user's with its role), valid over `window`, into `<dir>/<stem>.crt` and `.key`;
/// returns the certificate's file name.
fn issue(
    dir: &Path,
    issuer: &Issuer<'_, KeyPair>,
    id: Identity,
    role: Option<&str>,
    sans: &[String],
    window: (OffsetDateTime, OffsetDateTime),
) -> anyhow::Result<String> {
    let key = KeyPair::generate().context("generating a key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, id.to_string());
    if let Some(role) = role {
        params.distinguished_name.push(
            DnType::OrganizationName,
            format!("{}{role}", cairn_proto::tls::server::ROLE_PREFIX),
        );
    }
    params.subject_alt_names = vec![SanType::URI(
        id.urn().try_into().context("the identity as a URI")?,
    )];
    let serves = matches!(id, Identity::Member(_) | Identity::Agent(_));
    if serves {
        let hosts: Vec<String> = if sans.is_empty() {
            vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
        } else {
            sans.to_vec()
        };
        for h in hosts {
            params.subject_alt_names.push(match h.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    h.as_str()
                        .try_into()
                        .with_context(|| format!("{h:?} is not a host name"))?,
                ),
            });
        }
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = if serves {
        vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ]
    } else {
        vec![ExtendedKeyUsagePurpose::ClientAuth]
    };
    params.use_authority_key_identifier_extension = true;
    (params.not_before, params.not_after) = window;
    let cert = params
        .signed_by(&key, issuer)
        .with_context(|| format!("signing {id}'s certificate"))?;
    let stem = file_stem(&id);
    write_file(&dir.join(format!("{stem}.crt")), &cert.pem(), false)?;
    write_file(&dir.join(format!("{stem}.key")), &key.serialize_pem(), true)?;
    Ok(format!("{stem}.crt"))
}

/// Write a file whole (a reloading server never sees half of it: written aside, then
/// renamed); keys readable by their owner only.
fn write_file(path: &Path, text: &str, secret: bool) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
