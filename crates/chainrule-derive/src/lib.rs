//! `#[derive(Module)]` for chainrule: implements `chainrule::nn::Parameters`
//! (named parameters, buffers, the train/eval switch) for a struct from its
//! fields, so that a user writes only `forward`:
//!
//! ```ignore
//! use chainrule::nn::{self, Module, Parameters};
//!
//! #[derive(Module)]
//! struct Net {
//!     conv: nn::Conv2d,
//!     head: nn::Linear,
//!     #[module(skip)]
//!     classes: usize,
//! }
//!
//! impl Module for Net {
//!     fn forward(&self, x: &chainrule::Tensor) -> chainrule::Result<chainrule::Tensor> { /* … */ }
//! }
//! ```
//!
//! Every field not marked `#[module(skip)]` must implement `Parameters`
//! (a layer, a `Param`, a `Buffer`, a `Training` flag, or an `Option`, `Vec`
//! or `Box` of one); its entries are named `field.inner` (`head.weight`),
//! or by position for tuple structs (`0.weight`), or without the field's
//! name under `#[module(flatten)]`.
#![warn(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Field, Fields};

/// Derives `chainrule::nn::Parameters` for a struct from its fields, as the
/// crate docs describe; see there for `#[module(skip)]` and `#[module(flatten)]`.
#[proc_macro_derive(Module, attributes(module))]
pub fn derive_module(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(&input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "#[derive(Module)] works on structs",
        ));
    };
    let mut names = Vec::new();
    let mut fields = Vec::new();
    for (i, field) in data.fields.iter().enumerate() {
        let attr = attribute(field)?;
        if attr == Some(Attr::Skip) {
            continue;
        }
        let (name, access) = match &field.ident {
            Some(ident) => (ident.to_string(), quote!(self.#ident)),
            None => {
                let index = syn::Index::from(i);
                (i.to_string(), quote!(self.#index))
            }
        };
        names.push(if attr == Some(Attr::Flatten) {
            String::new()
        } else {
            name
        });
        fields.push(access);
    }
    if let Fields::Unit = data.fields {
        names.clear();
    }
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let nn = quote!(::chainrule::nn);
    Ok(quote! {
        impl #impl_generics #nn::Parameters for #name #ty_generics #where_clause {
            fn named_params(&self) -> ::std::vec::Vec<(::std::string::String, #nn::Param)> {
                let mut out = ::std::vec::Vec::new();
                #( #nn::prefixed(&mut out, #names, #nn::Parameters::named_params(&#fields)); )*
                out
            }

            fn named_buffers(&self) -> ::std::vec::Vec<(::std::string::String, #nn::Buffer)> {
                let mut out = ::std::vec::Vec::new();
                #( #nn::prefixed(&mut out, #names, #nn::Parameters::named_buffers(&#fields)); )*
                out
            }

            fn set_training(&self, training: bool) {
                #( #nn::Parameters::set_training(&#fields, training); )*
            }
        }
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Attr {
    /// `#[module(skip)]`: not a module (a size, a flag…).
    Skip,
    /// `#[module(flatten)]`: the field's entries without its name as prefix.
    Flatten,
}

fn attribute(field: &Field) -> syn::Result<Option<Attr>> {
    let mut found = None;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("module")) {
        attr.parse_nested_meta(|meta| {
            let this = if meta.path.is_ident("skip") {
                Attr::Skip
            } else if meta.path.is_ident("flatten") {
                Attr::Flatten
            } else {
                return Err(meta.error("expected `#[module(skip)]` or `#[module(flatten)]`"));
            };
            if found.is_some_and(|f| f != this) {
                return Err(meta.error("a field is either skipped or flattened, not both"));
            }
            found = Some(this);
            Ok(())
        })?;
    }
    Ok(found)
}
