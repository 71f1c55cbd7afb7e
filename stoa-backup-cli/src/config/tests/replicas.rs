//! `replicate_to:` at the top level and per component: what each component's list becomes,
//! and the errors, each naming the file, the line of the name and the key.

use super::{ok, read, refused};

/// Three local targets and the `components:` given.
fn config(top: &str, components: &str) -> String {
    format!(
        "storage:\n  main: {{type: local, path: /b}}\n  dr: {{type: local, path: /dr}}\n  far: {{type: local, path: /far}}\n{top}components:\n{components}"
    )
}

#[test]
fn the_top_level_applies_to_every_component_unless_it_names_its_own() {
    let c = ok(&config(
        "replicate_to: [dr, far]\n",
        "  pg: {type: postgres, host: db, storage: main}\n  \
         in-dr: {type: postgres, host: db, storage: dr}\n  \
         own: {type: postgres, host: db, storage: main, replicate_to: far}\n  \
         none: {type: postgres, host: db, storage: main, replicate_to: []}\n",
    ));
    assert_eq!(c.replicate_to, ["dr", "far"]);
    let lists: Vec<(&str, Vec<&str>)> = c
        .components
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.replicate_to.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        lists,
        [
            ("pg", vec!["dr", "far"]),
            // Its own target is left out of the top level's list.
            ("in-dr", vec!["far"]),
            // One name, replacing the top level's.
            ("own", vec!["far"]),
            // `[]`: no copies.
            ("none", vec![]),
        ]
    );
    assert_eq!(
        c.component("pg").unwrap().targets().collect::<Vec<_>>(),
        ["main", "dr", "far"]
    );
    // `config check --json` shows each component's list, none when empty.
    let json = serde_json::to_value(&c).unwrap();
    assert_eq!(json["replicate_to"], serde_json::json!(["dr", "far"]));
    assert_eq!(
        json["components"][0]["replicate_to"],
        serde_json::json!(["dr", "far"])
    );
    assert!(json["components"][3].get("replicate_to").is_none());

    // Without a top-level key, only the components that name replicas have them.
    let c = ok(&config(
        "",
        "  pg: {type: postgres, host: db, storage: main, replicate_to: [far, dr]}\n  \
         kc: {type: postgres, host: db, storage: main}\n",
    ));
    assert!(c.replicate_to.is_empty());
    assert_eq!(c.components[0].replicate_to, ["far", "dr"]);
    assert!(c.components[1].replicate_to.is_empty());
}

#[test]
fn an_unknown_target_is_named_with_its_line_and_key() {
    let text = config(
        "replicate_to:\n  - dr\n  - nowhere\n",
        "  pg: {type: postgres, host: db, storage: main}\n",
    );
    let e = refused(
        &text,
        "- nowhere",
        "replicate_to",
        "no storage target is named `nowhere`",
    );
    assert_eq!(e.file, "t.yaml");
    assert_eq!(e.hint.as_deref(), Some("the targets are: main, dr, far"));
    assert!(
        e.to_string()
            .starts_with("t.yaml:7:5: replicate_to: no storage target is named `nowhere`"),
        "{e}"
    );

    let text = config(
        "",
        "  pg:\n    type: postgres\n    host: db\n    storage: main\n    replicate_to: [dr, elsewhere]\n",
    );
    refused(
        &text,
        "replicate_to: [dr, elsewhere]",
        "components.pg.replicate_to",
        "no storage target is named `elsewhere`",
    );
    // One name, not a list: the line of the value.
    let text = config(
        "",
        "  pg:\n    type: postgres\n    host: db\n    storage: main\n    replicate_to: elsewhere\n",
    );
    refused(
        &text,
        "replicate_to: elsewhere",
        "components.pg.replicate_to",
        "no storage target is named `elsewhere`",
    );
}

#[test]
fn twice_the_same_target_or_the_components_own_is_refused() {
    refused(
        &config(
            "replicate_to: [dr, far, dr]\n",
            "  pg: {type: postgres, host: db, storage: main}\n",
        ),
        "replicate_to: [dr, far, dr]",
        "replicate_to",
        "names `dr` twice",
    );
    let e = refused(
        &config(
            "",
            "  pg:\n    type: postgres\n    host: db\n    storage: main\n    replicate_to:\n      - main\n",
        ),
        "- main",
        "components.pg.replicate_to",
        "`main` is the component's own storage target",
    );
    assert!(
        e.hint.as_deref().unwrap().contains("replicate_to: []"),
        "{e}"
    );
}

#[test]
fn names_are_interpolated_and_must_be_names() {
    // A variable naming the target (one configuration for both regions).
    let c = ok(&config(
        "replicate_to: [\"${REPLICA:-dr}\"]\n",
        "  pg: {type: postgres, host: db, storage: main}\n",
    ));
    assert_eq!(c.components[0].replicate_to, ["dr"]);
    // A number, or a mapping, is not a name: the parser's error names the line and key.
    for bad in ["replicate_to: 3\n", "replicate_to: {dr: true}\n"] {
        let text = config(bad, "  pg: {type: postgres, host: db, storage: main}\n");
        let e = read(&text).expect_err("refused");
        let line = text
            .lines()
            .position(|l| l.starts_with("replicate_to"))
            .unwrap() as u64
            + 1;
        assert_eq!(e.line, Some(line), "{e}");
        assert_eq!(e.key.as_deref(), Some("replicate_to"), "{e}");
    }
    // An empty name.
    refused(
        &config(
            "replicate_to: [\"\"]\n",
            "  pg: {type: postgres, host: db, storage: main}\n",
        ),
        "replicate_to: [\"\"]",
        "replicate_to",
        "is empty",
    );
}
