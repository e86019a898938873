# pragma version ~=0.4.3
# Baseline for benchmarks/ledger.py: store each sample's CID string on chain.

cids: public(HashMap[uint256, String[64]])
count: public(uint256)


@external
def store(batch: DynArray[String[64], 256]):
    n: uint256 = self.count
    for cid: String[64] in batch:
        self.cids[n] = cid
        n += 1
    self.count = n
