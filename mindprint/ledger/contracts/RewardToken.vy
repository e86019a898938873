# pragma version ~=0.4.3
"""
@title mindprint reward token
@notice ERC-20 (+ EIP-2612 permit) from snekmate's audited module. The owner makes the
        RewardDistributor a minter; nothing else mints.
"""

from snekmate.auth import ownable
from snekmate.tokens import erc20

initializes: ownable
initializes: erc20[ownable := ownable]

exports: erc20.__interface__


@deploy
def __init__():
    ownable.__init__()
    erc20.__init__("mindprint reward", "MIND", 18, "mindprint reward", "1")
