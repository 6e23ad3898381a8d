//! Expanding a command template (an argv array) with its placeholders: single values are
//! replaced inside one argv entry, in one pass (a replaced value is never scanned again), and
//! list placeholders that stand alone expand to zero or more entries (see
//! [`super::command`] for the placeholders).
//!
//! This module must never join values into shell text.

/// Values for the placeholders of one command.
#[derive(Default)]
pub(crate) struct Vars<'a> {
    pub single: Vec<(&'static str, &'a str)>,
    pub lists: Vec<(&'static str, &'a [String])>,
}

/// Expands a template (see the module docs). Unknown `{…}` text is kept as it is.
pub(crate) fn expand(template: &[String], vars: &Vars<'_>) -> Vec<String> {
    let mut out = Vec::with_capacity(template.len());
    for entry in template {
        if let Some((_, list)) = vars.lists.iter().find(|(k, _)| {
            entry.len() == k.len() + 2 && entry.starts_with('{') && entry[1..].starts_with(k)
        }) {
            out.extend(list.iter().cloned());
            continue;
        }
        let mut s = String::with_capacity(entry.len());
        let mut rest = entry.as_str();
        while let Some(open) = rest.find('{') {
            s.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let hit = after.find('}').and_then(|close| {
                let key = &after[..close];
                vars.single
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| (close, *v))
            });
            match hit {
                Some((close, v)) => {
                    s.push_str(v);
                    rest = &after[close + 1..];
                }
                None => {
                    s.push('{');
                    rest = after;
                }
            }
        }
        s.push_str(rest);
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn placeholders_are_replaced_inside_entries_only_once() {
        let opts = s(&["--time=1", "--ntasks=2"]);
        let ids = s(&["1", "2"]);
        let vars = Vars {
            single: vec![("job_name", "a{id}b"), ("id", "X"), ("ids", "1,2")],
            lists: vec![("options", &opts), ("id_list", &ids)],
        };
        let out = expand(
            &s(&[
                "cmd",
                "--name={job_name}",
                "{options}",
                "--jobs={ids}",
                "{id_list}",
                "{unknown}",
                "%i|%T",
                "{",
            ]),
            &vars,
        );
        assert_eq!(
            out,
            s(&[
                "cmd",
                "--name=a{id}b",
                "--time=1",
                "--ntasks=2",
                "--jobs=1,2",
                "1",
                "2",
                "{unknown}",
                "%i|%T",
                "{"
            ])
        );
    }

    #[test]
    fn values_with_spaces_stay_one_argument() {
        let vars = Vars {
            single: vec![("script", "/tmp/a b/$(x);y.sh")],
            lists: vec![],
        };
        assert_eq!(
            expand(&s(&["run", "{script}"]), &vars),
            s(&["run", "/tmp/a b/$(x);y.sh"])
        );
    }
}
