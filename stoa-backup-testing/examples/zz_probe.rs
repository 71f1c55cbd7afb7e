use std::time::Instant;
use stoa_backup_testing::{Migrations, TestDatabases};
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let sql = std::fs::read_to_string("/work/main/benches/support/stoa_like.sql").unwrap();
    let pool = TestDatabases::new("postgres://postgres@127.0.0.1:5432/postgres", Migrations::new().sql("s.sql", sql)).await.unwrap();
    let mut v = vec![];
    let mut d = vec![];
    for _ in 0..30 {
        let db = pool.checkout().await.unwrap();
        v.push(db.took().as_secs_f64()*1e3);
        let t = Instant::now();
        drop(db);
        d.push(t.elapsed().as_secs_f64()*1e3);
    }
    v.sort_by(|a,b| a.partial_cmp(b).unwrap());
    d.sort_by(|a,b| a.partial_cmp(b).unwrap());
    println!("checkout median {:.1} p10 {:.1} p90 {:.1}; drop median {:.1}", v[15], v[3], v[27], d[15]);
}
