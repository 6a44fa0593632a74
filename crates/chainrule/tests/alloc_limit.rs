//! The allocation limit is one setting for the whole process: changing it
//! gets a test binary of its own, so no other test allocates meanwhile.

use chainrule::{DType, Tensor};

#[test]
fn the_allocation_limit_can_be_lowered_and_restored() {
    let before = chainrule::max_tensor_bytes();
    chainrule::set_max_tensor_bytes(1024);
    let refused = Tensor::try_zeros(&[200], DType::F64);
    let fits = Tensor::try_zeros(&[100], DType::F64);
    // Each operand fits; their broadcast sum (20 × 20 × 8 bytes) does not.
    let sum = Tensor::ones(&[20], DType::F64).try_add(&Tensor::ones(&[20, 1], DType::F64));
    chainrule::set_max_tensor_bytes(0);
    let restored = chainrule::max_tensor_bytes();
    chainrule::set_max_tensor_bytes(before);
    let e = refused.unwrap_err().to_string();
    assert!(
        e.contains("full") && e.contains("1600 bytes") && e.contains("1024"),
        "{e}"
    );
    assert!(fits.is_ok());
    assert!(sum.is_err());
    assert_eq!(restored, before, "0 restores the default");
}
