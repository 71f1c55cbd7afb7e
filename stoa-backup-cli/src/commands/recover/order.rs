//! Which components a command acts on, and in what order: STOA's recovery order by
//! component type, and the storage targets' shares of a recovery (one recovery reads one
//! storage target).

use stoa_backup::core::recovery::stoa_rank;

use crate::config::model::{Component, Config, Settings, VaultMode};

/// The components named (every component when none is), in file order; an unknown name
/// is a usage error listing the components.
pub(crate) fn select_components<'c>(
    config: &'c Config,
    names: &[String],
) -> Result<Vec<&'c Component>, String> {
    for n in names {
        if config.component(n).is_none() {
            let known: Vec<&str> = config.components.iter().map(|c| c.name.as_str()).collect();
            return Err(format!(
                "no component is named `{n}` in {}: the components are {}",
                config.file,
                known.join(", ")
            ));
        }
    }
    Ok(config
        .components
        .iter()
        .filter(|c| names.is_empty() || names.contains(&c.name))
        .collect())
}

/// A component's rank in STOA's recovery order, by its type (the core ranks components by
/// their usual names; configured components may be named otherwise).
fn stoa_order(c: &Component) -> u32 {
    stoa_rank(match &c.settings {
        Settings::Postgres(_) => "postgres",
        Settings::Vault(v) if v.mode == VaultMode::Snapshot => "vault-snapshot",
        Settings::Vault(_) => "vault-kv",
        Settings::Infisical(_) => "infisical",
        Settings::Keycloak(_) => "keycloak",
        Settings::Crds(_) => "crds",
        Settings::Helm(_) => "helm",
        Settings::Grafana(_) => "grafana",
    })
}

/// The components of one storage target, in STOA order: what one recovery restores.
pub(crate) struct TargetGroup<'c> {
    /// The storage target's name.
    pub storage: &'c str,
    /// Its components, in running order.
    pub components: Vec<&'c Component>,
}

impl<'c> TargetGroup<'c> {
    /// Every one of `components` read from the one target `storage` (`recover --from`), in
    /// STOA order.
    pub fn all_in(storage: &'c str, components: &[&'c Component]) -> Self {
        let mut components = components.to_vec();
        components.sort_by_key(|c| stoa_order(c));
        TargetGroup {
            storage,
            components,
        }
    }

    /// The components' names.
    pub fn names(&self) -> Vec<&str> {
        self.components.iter().map(|c| c.name.as_str()).collect()
    }
}

/// Groups `components` by storage target: each group in STOA order, the groups by their
/// lowest rank, then their highest.
pub(crate) fn by_target<'c>(components: &[&'c Component]) -> Vec<TargetGroup<'c>> {
    let items: Vec<(&str, u32)> = components
        .iter()
        .map(|c| (c.storage.as_str(), stoa_order(c)))
        .collect();
    group_indices(&items)
        .into_iter()
        .map(|indices| TargetGroup {
            storage: items[indices[0]].0,
            components: indices.iter().map(|&i| components[i]).collect(),
        })
        .collect()
}

/// Refuses groups that, run one after another, would break STOA order; the error names the
/// components in order and the commands that recover them in order.
pub(crate) fn check_order(components: &[&Component], groups: &[TargetGroup]) -> Result<(), String> {
    let items: Vec<(&str, u32)> = components
        .iter()
        .map(|c| (c.storage.as_str(), stoa_order(c)))
        .collect();
    let ranks: Vec<Vec<u32>> = groups
        .iter()
        .map(|g| g.components.iter().map(|c| stoa_order(c)).collect())
        .collect();
    if keeps_order(&ranks) {
        return Ok(());
    }
    let segments = segments(&items);
    let order: Vec<String> = segments
        .iter()
        .flatten()
        .map(|&i| {
            let c = components[i];
            format!("{} ({}, in {})", c.name, c.kind(), c.storage)
        })
        .collect();
    let commands: Vec<String> = segments
        .iter()
        .map(|seg| {
            let names: Vec<&str> = seg.iter().map(|&i| components[i].name.as_str()).collect();
            format!("`stoa-backup recover {}`", names.join(" "))
        })
        .collect();
    Err(format!(
        "the components are in storage targets that interleave in STOA order: {}. One recovery \
         reads one storage target, and recovering target by target would break that order. \
         Recover them in order, one command per storage target's share: {}",
        order.join(" → "),
        commands.join(", then ")
    ))
}

/// Indices of `items` (target, rank) grouped by target: within a group by rank (stable), the
/// groups by their lowest rank, then their highest, then first appearance.
fn group_indices(items: &[(&str, u32)]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, (target, _)) in items.iter().enumerate() {
        match groups.iter_mut().find(|g| items[g[0]].0 == *target) {
            Some(g) => g.push(i),
            None => groups.push(vec![i]),
        }
    }
    for g in &mut groups {
        g.sort_by_key(|&i| items[i].1);
    }
    let bounds = |g: &Vec<usize>| (items[g[0]].1, items[*g.last().expect("non-empty")].1);
    groups.sort_by_key(bounds);
    groups
}

/// Whether running `groups` (their ranks, each in order) one after another keeps rank order:
/// each group's highest rank is at most the next one's lowest (equal ranks have no order).
fn keeps_order(groups: &[Vec<u32>]) -> bool {
    groups
        .windows(2)
        .all(|w| match (w[0].last(), w[1].first()) {
            (Some(high), Some(low)) => high <= low,
            _ => true,
        })
}

/// The items in rank order (stable), cut where the target changes: the recoveries to run
/// one after another when grouping by target would break the order.
fn segments(items: &[(&str, u32)]) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items[i].1);
    let mut out: Vec<Vec<usize>> = Vec::new();
    for i in order {
        match out.last_mut() {
            Some(seg) if items[seg[0]].0 == items[i].0 => seg.push(i),
            _ => out.push(vec![i]),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_keep_stoa_order_within_and_between_targets() {
        // keycloak(30) in git, postgres(10) in s3, helm(50) in git, grafana(60) in git.
        let items = [("git", 30), ("s3", 10), ("git", 50), ("git", 60)];
        let groups = group_indices(&items);
        assert_eq!(groups, vec![vec![1], vec![0, 2, 3]]);
        let ranks: Vec<Vec<u32>> = groups
            .iter()
            .map(|g| g.iter().map(|&i| items[i].1).collect())
            .collect();
        assert!(keeps_order(&ranks));
    }

    #[test]
    fn equal_ranks_in_two_targets_need_no_order() {
        // Two PostgreSQL components in two targets, then Keycloak beside the second.
        let items = [("a", 10), ("b", 30), ("b", 10)];
        let groups = group_indices(&items);
        assert_eq!(groups, vec![vec![0], vec![2, 1]]);
        let ranks: Vec<Vec<u32>> = groups
            .iter()
            .map(|g| g.iter().map(|&i| items[i].1).collect())
            .collect();
        assert!(keeps_order(&ranks));
    }

    #[test]
    fn interleaved_targets_break_the_order_and_segments_keep_it() {
        // postgres in s3, keycloak in git, grafana in s3.
        let items = [("s3", 10), ("git", 30), ("s3", 60)];
        let groups = group_indices(&items);
        let ranks: Vec<Vec<u32>> = groups
            .iter()
            .map(|g| g.iter().map(|&i| items[i].1).collect())
            .collect();
        assert!(!keeps_order(&ranks));
        assert_eq!(segments(&items), vec![vec![0], vec![1], vec![2]]);
        // Neighbours of one target share a segment.
        let items = [("s3", 60), ("git", 30), ("s3", 10), ("s3", 20)];
        assert_eq!(segments(&items), vec![vec![2, 3], vec![1], vec![0]]);
    }
}
