//! `foxxy-bridge schema` and `foxxy-bridge config validate`.

use super::{Context, Outcome};
use crate::{config, output};

pub fn schema() -> Outcome {
    output::raw(config::schema_json());
    Outcome::Success
}

pub fn validate(context: &Context) -> anyhow::Result<Outcome> {
    let path = context.config_path()?;
    match config::load(&path) {
        Ok(settings) => {
            let enabled = settings.enabled_servers().count();
            output::line(format_args!(
                "`{}` is valid: {} server(s), {enabled} enabled",
                path.display(),
                settings.servers.len()
            ));
            Ok(Outcome::Success)
        }
        Err(error) => {
            // The whole chain: a file that cannot be read says why (the OS reason).
            output::error_line(format_args!("{:#}", anyhow::Error::new(error)));
            Ok(Outcome::Failure)
        }
    }
}
