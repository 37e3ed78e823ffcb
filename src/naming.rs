//! How a message to the user names a setting: as `l0 calibrate`'s flag
//! (`--lambda-l0`) or as Python's keyword argument (`lambda_l0`), so a
//! warning or a hint is written once for both.

/// How a message names a setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Naming {
    /// `l0 calibrate`'s flags: `--lambda-l0`, `--loss relative`.
    Cli,
    /// Python's `fit` keyword arguments: `lambda_l0`, `loss_type="relative"`.
    Python,
}

impl Naming {
    /// The setting `name` (the library's field name: `lambda_l0`, `loss`,
    /// `groups`) as this side spells it.
    pub fn setting(self, name: &str) -> String {
        match self {
            Naming::Cli => format!("--{}", name.replace('_', "-")),
            Naming::Python => match name {
                "loss" => "loss_type".into(),
                "groups" => "target_groups".into(),
                _ => name.into(),
            },
        }
    }

    /// The setting `name` given the text value `value`.
    pub fn choice(self, name: &str, value: &str) -> String {
        match self {
            Naming::Cli => format!("{} {value}", self.setting(name)),
            Naming::Python => format!("{}=\"{value}\"", self.setting(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_settings_as_each_side_spells_them() {
        assert_eq!(Naming::Cli.setting("lambda_l0"), "--lambda-l0");
        assert_eq!(Naming::Python.setting("lambda_l0"), "lambda_l0");
        assert_eq!(Naming::Cli.choice("loss", "relative"), "--loss relative");
        assert_eq!(
            Naming::Python.choice("loss", "relative"),
            "loss_type=\"relative\""
        );
        assert_eq!(Naming::Python.setting("groups"), "target_groups");
    }
}
