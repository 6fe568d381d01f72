//! The seed's well-known collections (`COL_*`), so code written against the original
//! zcore-storage keeps compiling. Each constant is a collection name; the engine creates the
//! collection on demand (see [`crate::Engine::create_collection`]) and the seed-compatible
//! `Store` creates all of them at open.

macro_rules! collections {
    ($($(#[$doc:meta])* $konst:ident = $name:literal;)*) => {
        $( $(#[$doc])* pub const $konst: &str = $name; )*
        /// Every well-known collection name, in declaration order.
        pub const ALL: &[&str] = &[$($name),*];
    };
}

collections! {
    /// Table and index metadata.
    COL_CATALOG = "catalog";
    /// Row data keyed by org / table / row id.
    COL_ROWS = "rows";
    /// Sequence state of the original layout (the engine keeps its own in `__meta`).
    COL_SEQ = "seq";
    /// Vector index metadata and edges.
    COL_INDEX = "index";
    /// RBAC permissions.
    COL_PERMISSIONS = "permissions";
    /// Users.
    COL_USERS = "users";
    /// Sessions.
    COL_SESSIONS = "sessions";
    /// Advanced session management.
    COL_ENHANCED_SESSIONS = "enhanced_sessions";
    /// API keys.
    COL_API_KEYS = "api_keys";
    /// OAuth providers.
    COL_OAUTH_PROVIDERS = "oauth_providers";
    /// OAuth accounts linked to users.
    COL_OAUTH_ACCOUNTS = "oauth_accounts";
    /// OAuth tokens.
    COL_OAUTH_TOKENS = "oauth_tokens";
    /// OAuth authorization states.
    COL_OAUTH_STATES = "oauth_states";
    /// OAuth clients.
    COL_OAUTH_CLIENTS = "oauth_clients";
    /// OAuth authorization codes.
    COL_OAUTH_CODES = "oauth_codes";
    /// Organizations.
    COL_ORGANIZATIONS = "organizations";
    /// Teams.
    COL_TEAMS = "teams";
    /// Organization membership.
    COL_ORGANIZATION_MEMBERS = "organization_members";
    /// Team membership.
    COL_TEAM_MEMBERS = "team_members";
    /// Workspaces.
    COL_WORKSPACES = "workspaces";
    /// Workspace membership.
    COL_WORKSPACE_MEMBERS = "workspace_members";
    /// Invitations.
    COL_INVITATIONS = "invitations";
    /// Roles.
    COL_ROLES = "roles";
    /// Role assignments.
    COL_ROLE_ASSIGNMENTS = "role_assignments";
    /// Jobs (zbrain).
    COL_JOBS = "jobs";
    /// Job logs.
    COL_JOB_LOGS = "job_logs";
    /// Job schedules.
    COL_JOB_SCHEDULES = "job_schedules";
    /// Job results.
    COL_JOB_RESULTS = "job_results";
    /// Events (zevents).
    COL_EVENTS = "events";
    /// Event-sourcing snapshots.
    COL_SNAPSHOTS = "snapshots";
    /// Event subscriptions.
    COL_EVENT_SUBSCRIPTIONS = "event_subscriptions";
    /// Webhooks.
    COL_WEBHOOKS = "webhooks";
    /// TOTP secrets for two-factor authentication.
    COL_2FA_SECRETS = "2fa_secrets";
    /// Two-factor backup codes.
    COL_2FA_BACKUP_CODES = "2fa_backup_codes";
    /// Two-factor challenges in flight.
    COL_2FA_CHALLENGES = "2fa_challenges";
    /// WebAuthn credentials.
    COL_WEBAUTHN_CREDENTIALS = "webauthn_credentials";
    /// WebAuthn challenges in flight.
    COL_WEBAUTHN_CHALLENGES = "webauthn_challenges";
    /// Zero-knowledge identities.
    COL_IDENTITY_KEYS = "identity_keys";
    /// Identity proofs.
    COL_IDENTITY_PROOFS = "identity_proofs";
    /// Identity credentials.
    COL_IDENTITY_CREDENTIALS = "identity_credentials";
    /// Identity revocations.
    COL_IDENTITY_REVOCATIONS = "identity_revocations";
    /// Identity attestations.
    COL_IDENTITY_ATTESTATIONS = "identity_attestations";
    /// Performance testing.
    COL_BENCHMARK = "benchmark";
    /// Batch performance testing.
    COL_BATCH_BENCHMARK = "batch_benchmark";
    /// Mixed-workload testing.
    COL_MIXED = "mixed";
    /// Privacy compliance audit log.
    COL_PRIVACY_AUDIT_LOGS = "privacy_audit_logs";
    /// General audit log.
    COL_AUDIT_LOGS = "audit_logs";
    /// Consent records.
    COL_CONSENTS = "consents";
    /// Data-retention policies.
    COL_RETENTION_POLICIES = "retention_policies";
    /// Rate-limit counters.
    COL_RATE_LIMITS = "rate_limits";
    /// Feature flags.
    COL_FEATURE_FLAGS = "feature_flags";
    /// Settings.
    COL_SETTINGS = "settings";
    /// Notifications.
    COL_NOTIFICATIONS = "notifications";
    /// Files and blobs metadata.
    COL_FILES = "files";
    /// Schema migrations applied.
    COL_MIGRATIONS = "migrations";
    /// Metrics samples.
    COL_METRICS = "metrics";
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CollectionName;

    #[test]
    fn at_least_fifty_valid_unique_names() {
        assert!(ALL.len() >= 50, "{} collections", ALL.len());
        let mut names: Vec<&str> = ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "duplicate collection name");
        for name in ALL {
            assert!(CollectionName::new(name).is_ok(), "{name}");
        }
    }
}
