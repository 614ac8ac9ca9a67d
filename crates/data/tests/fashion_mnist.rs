//! Loads Fashion-MNIST from the Debian package (`apt-get install dataset-fashion-mnist`) when it
//! is installed; skipped with a message otherwise.

use std::path::Path;

use widealign_data::{info, load, registry, LoadOptions, Task};

const DIR: &str = "/usr/share/datasets/fashion-mnist";

#[test]
fn fashion_mnist_from_the_debian_package() {
    if !registry::is_idx_dir(Path::new(DIR)) {
        eprintln!(
            "SKIPPED fashion_mnist_from_the_debian_package: {DIR} is not installed \
             (apt-get install dataset-fashion-mnist)"
        );
        return;
    }
    let opts = LoadOptions {
        system_dir: Some("/usr/share/datasets".into()),
        ..LoadOptions::default()
    };
    let d = load("fashion-mnist", &opts).unwrap();
    assert_eq!(d.source, DIR);
    assert_eq!(d.task, Task::Classification { classes: 10 });
    let (tr, te) = (d.train.as_tabular().unwrap(), d.test.as_tabular().unwrap());
    assert_eq!((tr.len(), tr.input_dim()), (60_000, 784));
    assert_eq!((te.len(), te.input_dim()), (10_000, 784));
    assert_eq!(tr.class_counts().unwrap(), vec![6000; 10]);
    assert_eq!(te.class_counts().unwrap(), vec![1000; 10]);
    assert!(tr.x.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert_eq!(tr.x.max(), 1.0);
    let i = info("fashion-mnist", &opts).unwrap();
    assert_eq!(
        (i.train, i.test, i.input_dim, i.classes),
        (60_000, 10_000, 784, Some(10))
    );
}
