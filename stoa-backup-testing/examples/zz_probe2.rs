use std::time::Instant;
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let (c, conn) = tokio_postgres::connect("host=127.0.0.1 user=postgres dbname=postgres", tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let sc = std::env::args().nth(1).unwrap_or_default(); let tpl = std::env::args().nth(2).unwrap_or("tpl_probe".into());
    if sc == "off" { c.batch_execute("SET synchronous_commit = off").await.unwrap(); }
    let (mut a, mut b, mut d) = (vec![], vec![], vec![]);
    for i in 0..30 {
        let t = Instant::now();
        c.batch_execute(&format!("CREATE DATABASE zzp_{i} TEMPLATE {tpl} STRATEGY WAL_LOG")).await.unwrap();
        a.push(t.elapsed().as_secs_f64()*1e3);
        let t = Instant::now();
        c.batch_execute(&format!("COMMENT ON DATABASE zzp_{i} IS 'x'")).await.unwrap();
        b.push(t.elapsed().as_secs_f64()*1e3);
        let t = Instant::now();
        c.batch_execute(&format!("DROP DATABASE zzp_{i} WITH (FORCE)")).await.unwrap();
        d.push(t.elapsed().as_secs_f64()*1e3);
    }
    for v in [&mut a, &mut b, &mut d] { v.sort_by(|x,y| x.partial_cmp(y).unwrap()); }
    println!("create median {:.1} (p10 {:.1}) comment {:.1} drop {:.1}", a[15], a[3], b[15], d[15]);
}
