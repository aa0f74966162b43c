//! The name plumbing every objective term shares, written once: [`objective_term!`](crate::objective_term).

/// Declares an objective term's struct together with the name plumbing every term shares: a
/// default name (the term's config `kind`), a builder to rename it, and
/// [`PreferenceObjective::name`](crate::PreferenceObjective::name).
///
/// `objective_term! { <attributes> <vis> struct <Term> as "<kind>" { <fields> } }` declares
/// the struct with its attributes (doc comment, derives) and fields, plus a private field
/// `name: String` first, and generates
///
/// - `<Term>::KIND`, the config `kind` (e.g. `"dpo"`), which is also the default name: a
///   constructor sets `name: Self::KIND.into()`;
/// - `<Term>::named(name)`, the builder that renames the term (metrics are logged as
///   `loss/<name>`; two terms of one kind in one stack need distinct names).
///
/// Inside the term's `impl PreferenceObjective`, `objective_term!(fn name);` writes
/// `fn name(&self) -> &str`, which returns that field.
///
/// ```
/// use align_losses::{objective_term, BatchView, Metrics, Need, PreferenceObjective, Result, TermOutput};
///
/// objective_term! {
///     /// Twice the token-mean NLL of the chosen completions.
///     #[derive(Debug, Clone)]
///     pub struct DoubleSft as "double_sft" {
///         factor: f64,
///     }
/// }
///
/// impl DoubleSft {
///     /// The term, named `double_sft`.
///     pub fn new() -> Self {
///         Self { name: Self::KIND.into(), factor: 2.0 }
///     }
/// }
///
/// impl PreferenceObjective for DoubleSft {
///     objective_term!(fn name);
///
///     fn needs(&self) -> Vec<Need> {
///         vec![Need::PolicyLogps]
///     }
///
///     fn compute(&self, batch: &BatchView) -> Result<TermOutput> {
///         let policy = batch.require_policy(&self.name)?;
///         let loss = policy.chosen.token_mean_nll() * self.factor; // []
///         Ok(TermOutput { loss, metrics: Metrics::new() })
///     }
/// }
///
/// assert_eq!(DoubleSft::new().name(), "double_sft");
/// assert_eq!(DoubleSft::new().named("sft_x2").name(), "sft_x2");
/// ```
#[macro_export]
macro_rules! objective_term {
    (fn name) => {
        fn name(&self) -> &str {
            &self.name
        }
    };
    (
        $(#[$meta:meta])*
        $vis:vis struct $term:ident as $kind:literal {
            $($(#[$field_meta:meta])* $field_vis:vis $field:ident: $field_ty:ty),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $term {
            /// The term's name: its kind unless renamed with `named`.
            name: ::std::string::String,
            $($(#[$field_meta])* $field_vis $field: $field_ty,)*
        }

        impl $term {
            #[doc = concat!("The config `kind` of this term, `\"", $kind, "\"`, which is also its default name.")]
            pub const KIND: &str = $kind;

            #[doc = concat!(
                "Renames the term (default `", $kind, "`): its metrics are logged as `loss/<name>`, ",
                "and two terms of one kind in one stack need distinct names."
            )]
            pub fn named(mut self, name: impl ::std::convert::Into<::std::string::String>) -> Self {
                self.name = name.into();
                self
            }
        }
    };
}
