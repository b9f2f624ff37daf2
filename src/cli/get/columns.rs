//! The columns `regate get` shows for each kind, as `kubectl get` shows them (`-o wide` adds
//! the binding subjects), and the `AGE` column's rounding.

use k8s_openapi::api::core::v1::{Namespace, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Serialize;

use crate::authority::embedded::User;

/// An object `regate get` shows: its metadata, its table cells and itself as JSON.
pub(super) trait Listed: Serialize {
    fn meta(&self) -> &ObjectMeta;
    /// The cells under [`Kind::headers`]; `now` is in seconds since the epoch.
    fn cells(&self, now: i64, wide: bool) -> Vec<String>;
}

impl Listed for Namespace {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn cells(&self, now: i64, _wide: bool) -> Vec<String> {
        let phase = self.status.as_ref().and_then(|s| s.phase.clone());
        vec![
            name_of(&self.metadata),
            phase.unwrap_or_else(|| "Active".to_string()),
            age(&self.metadata, now),
        ]
    }
}

impl Listed for ServiceAccount {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn cells(&self, now: i64, _wide: bool) -> Vec<String> {
        vec![
            name_of(&self.metadata),
            self.secrets.as_ref().map_or(0, Vec::len).to_string(),
            age(&self.metadata, now),
        ]
    }
}

impl Listed for Role {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn cells(&self, _now: i64, _wide: bool) -> Vec<String> {
        vec![name_of(&self.metadata), created_at(&self.metadata)]
    }
}

impl Listed for ClusterRole {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn cells(&self, _now: i64, _wide: bool) -> Vec<String> {
        vec![name_of(&self.metadata), created_at(&self.metadata)]
    }
}

impl Listed for RoleBinding {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn cells(&self, now: i64, wide: bool) -> Vec<String> {
        binding_cells(&self.metadata, &self.role_ref, &self.subjects, now, wide)
    }
}

impl Listed for ClusterRoleBinding {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn cells(&self, now: i64, wide: bool) -> Vec<String> {
        binding_cells(&self.metadata, &self.role_ref, &self.subjects, now, wide)
    }
}

impl Listed for Secret {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn cells(&self, now: i64, _wide: bool) -> Vec<String> {
        // Keys only, counted as the API server would store them (stringData merged into data).
        let mut keys: Vec<&String> = self.data.iter().flat_map(|d| d.keys()).collect();
        keys.extend(self.string_data.iter().flat_map(|d| d.keys()));
        keys.sort();
        keys.dedup();
        vec![
            name_of(&self.metadata),
            self.type_.clone().unwrap_or_else(|| "Opaque".to_string()),
            keys.len().to_string(),
            age(&self.metadata, now),
        ]
    }
}

impl Listed for User {
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn cells(&self, _now: i64, wide: bool) -> Vec<String> {
        // regate's users have no full name and no identities (they log in with tokens only).
        let mut cells = vec![
            name_of(&self.metadata),
            self.metadata.uid.clone().unwrap_or_default(),
            String::new(),
            String::new(),
        ];
        if wide {
            cells.push(self.groups.join(","));
        }
        cells
    }
}

pub(super) fn name_of(meta: &ObjectMeta) -> String {
    meta.name.clone().unwrap_or_default()
}

fn binding_cells(
    meta: &ObjectMeta,
    role_ref: &RoleRef,
    subjects: &Option<Vec<Subject>>,
    now: i64,
    wide: bool,
) -> Vec<String> {
    let mut cells = vec![
        name_of(meta),
        format!("{}/{}", role_ref.kind, role_ref.name),
        age(meta, now),
    ];
    if wide {
        let subjects = subjects.as_deref().unwrap_or_default();
        let of_kind = |kind: &str| {
            subjects
                .iter()
                .filter(|s| s.kind == kind)
                .map(|s| match (kind, s.namespace.as_deref()) {
                    ("ServiceAccount", Some(ns)) => format!("{ns}/{}", s.name),
                    _ => s.name.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        cells.extend([of_kind("User"), of_kind("Group"), of_kind("ServiceAccount")]);
    }
    cells
}

/// The creation time as kubectl's `CREATED AT` column shows it, e.g. `2026-11-22T14:10:22Z`.
fn created_at(meta: &ObjectMeta) -> String {
    match &meta.creation_timestamp {
        Some(Time(at)) => k8s_openapi::jiff::Timestamp::from_second(at.as_second())
            .map(|t| t.to_string())
            .unwrap_or_else(|_| "<unknown>".to_string()),
        None => "<unknown>".to_string(),
    }
}

/// The object's age at `now` as kubectl's `AGE` column shows it.
fn age(meta: &ObjectMeta, now: i64) -> String {
    match &meta.creation_timestamp {
        Some(Time(at)) => human_duration(now.saturating_sub(at.as_second())),
        None => "<unknown>".to_string(),
    }
}

/// `seconds` as kubectl's `HumanDuration` writes it: `45s`, `5m10s`, `3h`, `2d4h`, `1y20d`;
/// precise when short, coarse when long.
pub(super) fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{years}y"),
            d => format!("{years}y{d}d"),
        };
    }
    format!("{years}y")
}
