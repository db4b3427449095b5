"""Word lists for identifiers and comments: realistic names drawn once per skeleton, consistent in a contract.

No entry may name or hint a flaw or its repair (see ``LEAK_WORDS``); the unit tests enforce it on the output.
"""

from __future__ import annotations

import random

# Substrings that must never appear in a generated identifier, string literal or comment (lower-cased).
# ``SafeMath`` (the library name, identical in a vulnerable contract and its twin) is the one exception.
LEAK_WORDS: tuple[str, ...] = (
    "vulnerab", "reentr", "exploit", "bug", "safe", "fix", "attack", "hack", "insecure", "secur",
    "flaw", "malicious", "overflow", "underflow", "unchecked", "danger", "unprotected", "exploit",
    "mutex", "sanitiz", "audit", "checks-effects",
)  # fmt: skip

# Names with a fixed meaning (the ERC20 interface): only the token's own mappings may take two of them.
RESERVED: frozenset[str] = frozenset(
    {"transfer", "approve", "transferFrom", "totalSupply", "name", "symbol", "decimals", "balanceOf",
     "allowance", "Transfer", "Approval"}
)  # fmt: skip

PAIRS: dict[str, tuple[str, str]] = {"owner_pair": ("owner", "only_owner"), "token_maps": ("token_bal", "token_allow")}

PREFIXES: tuple[str, ...] = (
    "Nova", "Orbit", "Harbor", "Cedar", "Summit", "Atlas", "Lumen", "Granite", "Maple", "Pioneer",
    "Silver", "Zenith", "Cobalt", "Aurora", "Beacon", "Crest", "Ember", "Falcon", "Glacier", "Horizon",
    "Ivory", "Juniper", "Keystone", "Lotus", "Meridian", "Nimbus", "Onyx", "Prairie", "Quartz", "Raven",
    "Sierra", "Tidal", "Umber", "Vertex", "Willow", "Yonder", "Acorn", "Bison", "Comet", "Delta",
    "Echo", "Fjord", "Golden", "Helix", "Indigo", "Jade", "Kestrel", "Lunar", "Mosaic", "Nexus",
    "Oasis", "Pylon", "Quill", "Ridge", "Solar", "Terra", "Unity", "Velvet", "Wharf", "Ether",
)  # fmt: skip

CONTRACT_SUFFIXES: dict[str, tuple[str, ...]] = {
    "erc20_token": ("Token", "Coin", "Credits", "Cash", "Points", "Shares", "ERC20", "Gold"),
    "vault": ("Vault", "Bank", "Treasury", "Reserve", "Savings", "Fund", "Pool", "Keeper", "Deposit", "Store"),
    "auction": ("Auction", "AuctionHouse", "Bidding", "Sale", "Gallery", "Market", "Bids"),
    "lottery": ("Lottery", "Lotto", "Raffle", "Jackpot", "Draw", "Sweepstake", "Fortune", "Game"),
    "multisig_wallet": ("MultiSig", "MultiSigWallet", "Wallet", "SharedWallet", "JointAccount", "Council"),
}

# role -> candidates. Params and locals are separate roles from state variables so they never shadow.
ROLES: dict[str, tuple[str, ...]] = {
    # owner / access
    "owner_pair": ("owner:onlyOwner", "admin:onlyAdmin", "operator:onlyOperator", "manager:onlyManager",
                   "governor:onlyGovernor", "owner:ownerOnly", "controller:onlyController"),
    "evt_owner": ("OwnershipTransferred", "OwnerChanged", "AdminChanged", "NewOwner", "OwnerUpdated"),
    "fn_transfer_owner": ("transferOwnership", "changeOwner", "setOwner", "updateOwner"),
    "p_new_owner": ("newOwner", "nextOwner", "newAdmin", "account", "successor"),
    "p_init_owner": ("initialOwner", "ownerAddress", "firstOwner", "newOwner"),
    "initialized": ("initialized", "isInitialized", "setupDone", "configured"),
    "fn_init": ("initialize", "init", "setup", "initWallet", "configure"),
    "fn_kill": ("close", "destroy", "kill", "shutdown", "terminate", "retire"),
    "paused": ("paused", "halted", "stopped", "frozen"),
    "when_live": ("whenNotPaused", "whenActive", "notHalted", "isRunning"),
    "fn_pause": ("pause", "halt", "stop", "freeze"),
    "fn_unpause": ("unpause", "resume", "restart", "unfreeze"),
    "fee": ("feeBps", "feeRate", "serviceFee", "commission", "feePercent"),
    "fn_set_fee": ("setFee", "updateFee", "setFeeRate", "changeFee"),
    "p_fee": ("newFee", "rate", "bps", "feeValue"),
    "collector": ("feeCollector", "treasury", "feeRecipient", "wallet", "payoutAddress"),
    "fn_set_collector": ("setFeeCollector", "setTreasury", "setRecipient", "updateWallet"),
    "p_collector": ("newCollector", "recipient", "target", "destination"),
    "fn_sweep": ("sweep", "rescueFunds", "drain", "collectBalance", "moveFunds"),
    "p_sweep_to": ("to", "receiver", "recipient", "dest"),
    # common params / locals
    "p_amount": ("amount", "value", "wad", "amt", "quantity"),
    "p_to": ("to", "recipient", "dst", "receiver", "beneficiary_"),
    "p_who": ("account", "user", "holder", "who", "addr"),
    "l_due": ("due", "owed", "payout", "credit", "available"),
    "l_share": ("share", "portion", "slice", "perHolder", "cut"),
    "l_idx": ("i", "j", "k", "idx", "n"),
    "ok_var": ("success", "ok", "sent", "done", "result"),
    "fn_balance": ("getBalance", "contractBalance", "totalHeld", "reserves", "balanceHeld"),
    # errors (0.8 custom errors)
    "err_auth": ("Unauthorized", "NotOwner", "CallerNotOwner", "OnlyOwner", "Forbidden", "NotAllowed"),
    "err_funds": ("InsufficientBalance", "NotEnoughFunds", "AmountTooLarge", "BalanceTooLow"),
    "err_transfer": ("TransferFailed", "PaymentFailed", "SendFailed", "CallFailed"),
    "err_state": ("InvalidState", "WrongPhase", "NotActive", "AlreadyDone", "Closed"),
    "err_input": ("InvalidAmount", "BadInput", "InvalidValue", "ZeroValue", "OutOfRange"),
    "err_time": ("TooEarly", "TooLate", "NotYet", "Expired", "WindowClosed"),
    "err_full": ("Full", "CapacityReached", "LimitReached", "TooMany"),
    # ledger (pull payments): vault deposits, auction refunds, lottery prizes, token dividends
    "ledger:vault": ("balances", "deposits", "userBalances", "accounts", "savings", "funds", "credits"),
    "ledger:auction": ("pendingReturns", "refunds", "pendingWithdrawals", "bidderCredit", "returnsOf"),
    "ledger:lottery": ("winnings", "prizes", "pendingPrizes", "payouts", "rewards"),
    "ledger:erc20_token": ("dividends", "dividendOf", "ethOwed", "pendingDividends", "earnings"),
    "fn_withdraw:vault": ("withdraw", "withdrawFunds", "cashOut", "takeOut", "redeem", "exit"),
    "fn_withdraw:auction": ("withdraw", "withdrawRefund", "claimRefund", "reclaim", "refund"),
    "fn_withdraw:lottery": ("claimPrize", "withdrawWinnings", "collect", "claim", "cashOut"),
    "fn_withdraw:erc20_token": ("claimDividends", "withdrawDividends", "collectDividends", "payout"),
    "evt_withdraw": ("Withdrawal", "Withdrawn", "LogWithdrawal", "Payout", "Claimed", "Paid"),
    "evt_deposit": ("Deposit", "Deposited", "Funded", "LogDeposit", "Received"),
    "fn_deposit": ("deposit", "depositFunds", "fund", "save", "store"),
    "total": ("totalDeposits", "totalHeld", "totalFunds", "totalBalance", "totalLocked"),
    "fn_move:vault": ("transferBalance", "moveFunds", "transferDeposit", "sendInternal", "reassign"),
    "evt_move": ("InternalTransfer", "Moved", "BalanceTransferred", "Reassigned"),
    "payees:vault": ("depositors", "savers", "members", "accountHolders", "clients"),
    "payees:erc20_token": ("shareholders", "holders", "stakeholders", "investors", "partners"),
    "max_payees": ("MAX_MEMBERS", "MAX_HOLDERS", "MEMBER_CAP", "MAX_ENTRIES", "CAPACITY"),
    "fn_distribute:vault": ("payInterest", "distributeBonus", "shareProfit", "airdropEther", "rewardAll"),
    "fn_distribute:erc20_token": ("distributeDividends", "payDividends", "shareRevenue", "distribute"),
    "fn_distribute:lottery": ("cancelRound", "refundAll", "abortRound", "cancelDraw"),
    "fn_add_payee": ("addShareholder", "registerHolder", "addHolder", "enroll", "addMember"),
    "evt_distribute": ("Distributed", "ProfitShared", "Dividend", "BonusPaid", "Refunded"),
    "lock": ("lockTime", "unlockAt", "lockedUntil", "releaseTime", "maturity"),
    "fn_extend": ("increaseLockTime", "extendLock", "lockLonger", "addLockTime", "prolong"),
    "p_secs": ("extraSeconds", "secondsToAdd", "duration", "extra", "period"),
    # erc20
    "token_maps": ("balances:allowed", "_balances:_allowances", "balanceOf:allowance", "balances:allowances",
                   "balanceOf:allowed"),
    "p_spender": ("spender", "_spender", "delegate", "operator_"),
    "p_from": ("from", "_from", "src", "sender"),
    "p_value": ("value", "_value", "tokens", "amount", "numTokens"),
    "fn_mint": ("mint", "issue", "mintTo", "createTokens"),
    "fn_burn": ("burn", "destroyTokens", "burnTokens", "redeemTokens"),
    "evt_burn": ("Burn", "Burned", "TokensBurned"),
    "price": ("tokenPrice", "price", "weiPerToken", "unitPrice", "pricePerToken"),
    "fn_set_price": ("setPrice", "updatePrice", "setTokenPrice", "changePrice"),
    "p_price": ("newPrice", "priceWei", "nextPrice", "weiPrice"),
    "fn_buy": ("buyTokens", "buy", "purchase", "mintFor"),
    "evt_buy": ("TokensPurchased", "Purchase", "Bought", "Sold"),
    "p_min_out": ("minTokens", "minAmountOut", "expectedTokens", "minReceived"),
    "launch": ("launchTime", "startTime", "openedAt", "listingTime", "genesisTime"),
    "drop_amount": ("airdropAmount", "bonusAmount", "dropSize", "claimAmount", "giftAmount"),
    "drop_claimed": ("claimed", "hasClaimed", "received", "airdropped"),
    "drop_count": ("claimCount", "airdropCount", "dropsIssued", "claimsSoFar"),
    "fn_drop": ("claimAirdrop", "claimBonus", "claimTokens", "redeemGift", "collectBonus"),
    "evt_drop": ("AirdropClaimed", "BonusClaimed", "Gifted", "Dropped"),
    # auction
    "beneficiary": ("beneficiary", "seller", "payee", "recipient"),
    "auction_end": ("auctionEnd", "endTime", "biddingEnd", "closingTime", "deadline"),
    "highest_bidder": ("highestBidder", "leader", "topBidder", "currentWinner"),
    "highest_bid": ("highestBid", "topBid", "leadingBid", "currentBid"),
    "ended": ("ended", "finalized", "settled", "closed"),
    "last_bid_at": ("lastBidAt", "lastBidTime", "latestBid", "lastActivity"),
    "fn_bid": ("bid", "placeBid", "submitBid", "offer"),
    "fn_end": ("endAuction", "finalize", "settle", "closeAuction", "auctionEnded"),
    "fn_set_beneficiary": ("setBeneficiary", "changeSeller", "updatePayee", "setRecipient"),
    "p_beneficiary": ("newBeneficiary", "seller_", "payeeAddress", "newRecipient"),
    "fn_extend_auction": ("extendAuction", "extendBidding", "postpone", "addTime"),
    "evt_bid": ("HighestBidIncreased", "NewBid", "BidPlaced", "LogBid"),
    "evt_end": ("AuctionEnded", "Settled", "Finalized", "AuctionClosed"),
    "p_bidding_time": ("biddingTime", "duration", "biddingPeriod", "openFor"),
    "fn_time_left": ("timeLeft", "remaining", "secondsLeft", "timeRemaining"),
    # lottery
    "players": ("players", "entrants", "participants", "tickets", "entries"),
    "ticket_price": ("ticketPrice", "entryFee", "price", "ticketCost", "stake"),
    "pot": ("pot", "prizePool", "jackpotPool", "roundPot", "poolBalance"),
    "round": ("round", "roundId", "currentRound", "drawNumber", "epoch"),
    "last_winner": ("lastWinner", "recentWinner", "previousWinner", "winner"),
    "fn_enter": ("enter", "buyTicket", "join", "play", "participate"),
    "fn_draw": ("draw", "pickWinner", "drawWinner", "selectWinner", "finishRound"),
    "evt_enter": ("TicketPurchased", "Entered", "NewPlayer", "Joined"),
    "evt_winner": ("WinnerPicked", "WinnerSelected", "RoundWon", "DrawCompleted"),
    "max_players": ("MAX_PLAYERS", "MAX_TICKETS", "ROUND_SIZE", "PLAYER_LIMIT"),
    "seed_hash": ("seedHash", "sealedSeed", "commitment", "seedCommit", "hiddenSeed"),
    "fn_commit_seed": ("commitSeed", "sealSeed", "startRound", "openRound", "prepareDraw"),
    "p_seed": ("seed", "secret", "reveal", "preimage", "salt_"),
    "p_seed_hash": ("hashedSeed", "sealedValue", "seedDigest", "digest"),
    "private_seed": ("seed", "nonce", "entropy", "salt", "randSeed"),
    "l_rand": ("rand", "random", "r", "roll", "pick"),
    "l_winner": ("chosen", "lucky", "picked", "drawn", "victor"),
    "credits": ("ticketCredits", "prepaid", "creditsOf", "ticketBalance"),
    "fn_buy_credits": ("buyTickets", "prepay", "buyCredits", "purchaseTickets"),
    "fn_use_credit": ("enterWithCredit", "redeemTicket", "useCredit", "enterPrepaid"),
    "p_count": ("count", "numTickets", "quantity_", "howMany"),
    "last_entry_at": ("lastEntryAt", "lastEntryTime", "lastPlayAt", "lastJoined"),
    "last_entrant": ("lastEntrant", "lastPlayer", "latestPlayer", "lastJoiner"),
    "fn_claim_pot": ("claimPot", "takePot", "claimLastPrize", "sweepPot"),
    "jackpot": ("jackpot", "bonusPool", "instantPool", "luckyPool"),
    "play_count": ("playCount", "spins", "plays", "gamesPlayed"),
    "fn_instant": ("spin", "instantPlay", "tryLuck", "roll", "quickPlay"),
    "evt_instant": ("Spin", "Played", "LuckyWin", "Rolled"),
    "answer_hash": ("answerHash", "solutionHash", "puzzleHash", "riddleHash"),
    "bounty": ("bounty", "reward", "prize", "puzzlePrize"),
    "solved": ("solved", "answered", "puzzleSolved", "isSolved"),
    "fn_set_puzzle": ("setPuzzle", "newPuzzle", "postRiddle", "openPuzzle"),
    "fn_solve": ("solve", "submitAnswer", "answer", "guess"),
    "fn_commit_answer": ("commitAnswer", "commitGuess", "sealAnswer", "lockInAnswer"),
    "answer_commits": ("commitments", "answerCommits", "sealedAnswers", "commits"),
    "commit_block": ("commitBlock", "committedAt", "commitHeight", "sealedAt"),
    "p_answer": ("answer_", "solution", "guessText", "response"),
    "p_salt": ("salt", "nonce_", "blinding", "pepper"),
    "p_commit": ("commitment_", "sealedHash", "hashedAnswer", "commitHash"),
    "evt_solved": ("PuzzleSolved", "Solved", "RiddleAnswered", "Winner"),
    # multisig
    "owners": ("owners", "signers", "members", "keyholders"),
    "is_owner": ("isOwner", "isSigner", "isMember", "authorized"),
    "required": ("required", "threshold", "quorum", "minSignatures"),
    "txs": ("transactions", "proposals", "requests", "queue"),
    "confirmations": ("confirmations", "approvals", "signatures", "votes"),
    "tx_count": ("transactionCount", "proposalCount", "nonce", "txCount"),
    "tx_struct": ("Transaction", "Proposal", "Request", "Operation"),
    "l_tx": ("txn", "t", "p", "op", "entry"),
    "only_wallet": ("onlyWallet", "onlySelf", "viaWallet", "selfOnly"),
    "only_signer": ("onlySigner", "ownerExists", "onlyMember", "signerOnly"),
    "fn_submit": ("submitTransaction", "propose", "submit", "queueTransaction"),
    "fn_confirm": ("confirmTransaction", "approve", "confirm", "sign"),
    "fn_revoke": ("revokeConfirmation", "revoke", "unapprove", "withdrawApproval"),
    "fn_execute": ("executeTransaction", "execute", "run", "perform"),
    "fn_is_confirmed": ("isConfirmed", "hasQuorum", "isApproved", "ready"),
    "fn_get_owners": ("getOwners", "listSigners", "getMembers", "allOwners"),
    "fn_add_owner": ("addOwner", "addSigner", "addMember", "appoint"),
    "fn_change_req": ("changeRequirement", "setThreshold", "updateQuorum", "setRequired"),
    "evt_submit": ("Submission", "Proposed", "Submitted", "Queued"),
    "evt_confirm": ("Confirmation", "Approved", "Signed", "Confirmed"),
    "evt_revoke": ("Revocation", "Revoked", "ApprovalRevoked", "Unsigned"),
    "evt_exec": ("Execution", "Executed", "Performed", "Relayed"),
    "evt_owner_add": ("OwnerAddition", "SignerAdded", "MemberAdded", "OwnerAdded"),
    "evt_req_change": ("RequirementChange", "ThresholdChanged", "QuorumUpdated", "RequiredChanged"),
    "p_owners": ("owners_", "initialOwners", "signerList", "keyholderList"),
    "p_required": ("required_", "minApprovals", "needed", "requiredCount"),
    "p_tx_id": ("transactionId", "txId", "proposalId", "id"),
    "p_dest": ("destination", "target", "callee", "dest"),
    "p_data": ("data", "payload", "callData", "input"),
    "daily_limit": ("dailyLimit", "spendLimit", "maxPerDay", "dayCap"),
    "spent_today": ("spentToday", "spent", "usedToday", "dailySpent"),
    "last_day": ("lastDay", "dayStart", "periodStart", "lastReset"),
    "fn_daily": ("withdrawDaily", "spendWithinLimit", "quickPay", "smallTransfer"),
}

CONTRACT_TITLES: dict[str, tuple[str, ...]] = {
    "erc20_token": ("A fungible token with a fixed owner.", "ERC20 token for the {name} community.",
                    "Token contract with holder payouts.", "Simple ERC20 implementation."),
    "vault": ("Holds ether on behalf of its users.", "Deposit and withdraw ether.",
              "Pooled savings account.", "Community treasury with individual balances."),
    "auction": ("Open ascending-price auction.", "English auction for a single item.",
                "Bidding contract that pays the seller at the end.", "Simple auction."),
    "lottery": ("Round-based lottery.", "Ticket raffle with a periodic draw.",
                "A small game of chance.", "Jackpot game for the {name} community."),
    "multisig_wallet": ("Wallet that needs several owners to agree.", "Multisignature wallet.",
                        "Shared wallet with confirmations.", "M-of-N wallet for a small team."),
}  # fmt: skip

# Comment phrases per member; "{x}" placeholders take names from the contract's roles.
DOCS: dict[str, tuple[str, ...]] = {
    "ctor": ("Sets up the contract.", "Initial configuration.", "Creates the contract and records the deployer.",
             "Deploys with the given settings."),
    "owner": ("Account allowed to administer the contract.", "Administrator address."),
    "only_owner": ("Restricts a call to the administrator.", "Reverts unless called by the {owner}."),
    "transfer_owner": ("Hands administration to a new account.", "Changes the {owner}.",
                       "Moves control of the contract."),
    "init": ("One-time setup after deployment.", "Configures the contract before use.",
             "Sets the initial administrator."),
    "kill": ("Retires the contract and sends the remaining ether to the {owner}.", "Shuts the contract down.",
             "Ends the contract's life."),
    "pause": ("Stops user operations.", "Temporarily halts the contract."),
    "unpause": ("Resumes user operations.", "Lifts a halt."),
    "set_fee": ("Updates the fee rate.", "Sets the fee in basis points."),
    "set_collector": ("Sets where fees go.", "Changes the fee recipient."),
    "sweep": ("Moves the contract's ether to another address.", "Collects the ether held here."),
    "deposit": ("Deposit ether into the caller's account.", "Credits the sender with the ether sent.",
                "Adds funds to the caller's balance."),
    "withdraw": ("Withdraw ether owed to the caller.", "Sends the caller their funds.",
                 "Pays out the caller's balance.", "Lets an account take out its ether."),
    "move": ("Moves part of the caller's balance to another account.", "Internal transfer between accounts."),
    "distribute": ("Shares the attached ether among all registered accounts.", "Pays everyone on the list.",
                   "Splits the value between members."),
    "add_payee": ("Registers an account for payouts.", "Adds a member to the list."),
    "extend": ("Pushes the caller's unlock time further out.", "Extends the lock period."),
    "balance": ("Ether held by this contract.", "Current contract balance."),
    "fallback": ("Accepts plain ether transfers.", "Receive ether."),
    "bid": ("Bid on the auction with the value sent.", "Places a bid; it must beat the current one.",
            "Submit a higher offer."),
    "end": ("Ends the auction and pays the {beneficiary}.", "Closes bidding and settles.",
            "Finalizes the sale."),
    "set_beneficiary": ("Changes who receives the proceeds.", "Updates the seller address."),
    "extend_auction": ("Gives bidders more time.", "Moves the end of the auction."),
    "time_left": ("Seconds until bidding closes.", "Remaining bidding time."),
    "enter": ("Buy one ticket for the current round.", "Join the current round.", "Enter the game."),
    "draw": ("Picks the winner of the current round.", "Draws a winner and starts a new round.",
             "Completes the round."),
    "commit_seed": ("Publishes the hash of the next draw's seed.", "Locks in the seed for the next draw."),
    "buy_credits": ("Prepay several tickets at once.", "Buys ticket credits."),
    "use_credit": ("Spends one prepaid ticket on the current round.", "Enter using a prepaid ticket."),
    "claim_pot": ("The last entrant takes the pot once the round goes quiet.", "Pays the pot to the last player."),
    "instant": ("Instant game: some plays win the bonus pool.", "Try your luck."),
    "set_puzzle": ("Posts a new puzzle with a reward.", "Opens a riddle; the value sent is the prize."),
    "solve": ("Submit the answer to the current puzzle.", "First correct answer wins the reward."),
    "commit_answer": ("Registers the hash of an answer ahead of time.", "Step one: seal your answer."),
    "players": ("Entrants of the current round.", "Tickets sold this round."),
    "transfer": ("Transfer tokens to another account.", "Moves `{p_value}` tokens from the caller.",
                 "Send tokens."),
    "approve": ("Allow a spender to move tokens on the caller's behalf.", "Sets an allowance."),
    "transfer_from": ("Moves tokens using an allowance.", "Spend an approved amount."),
    "balance_of": ("Token balance of an account.", "Returns the balance of `{p_who}`."),
    "allowance": ("Remaining allowance of a spender.", "How much a spender may still move."),
    "mint": ("Creates new tokens.", "Issues tokens to an account."),
    "burn": ("Destroys tokens from the caller's balance.", "Burns tokens."),
    "buy": ("Buy tokens with ether.", "Purchase tokens at the current price."),
    "set_price": ("Sets the token price in wei.", "Updates the sale price."),
    "drop": ("Claim the launch airdrop.", "One free allocation per account."),
    "submit": ("Proposes a transaction to the other owners.", "Adds a transaction to the queue."),
    "confirm": ("Confirms a pending transaction.", "Approve a proposal."),
    "revoke": ("Withdraws an earlier confirmation.", "Revokes the caller's approval."),
    "execute": ("Executes a confirmed transaction.", "Runs a proposal once it has enough confirmations."),
    "is_confirmed": ("True when enough owners confirmed.", "Checks the quorum for a proposal."),
    "get_owners": ("Lists the owners.", "Returns all signers."),
    "add_owner": ("Adds a new owner.", "Appoints another signer."),
    "change_req": ("Changes the number of confirmations needed.", "Updates the threshold."),
    "daily": ("Small payments within the daily limit need one owner.", "Spend below the daily limit."),
    "only_wallet": ("Only the wallet itself, through a confirmed transaction.",),
    "only_signer": ("Only one of the owners.", "Reverts unless the caller is a signer."),
    "ledger": ("Ether owed to each account.", "Per-account balances.", "Who can withdraw how much."),
    "events": ("Events", "Logs"),
    "state": ("State", "Storage"),
}  # fmt: skip


def pick_names(family: str, rng: random.Random, taken: set[str] | None = None) -> dict[str, str]:
    """Draw one name per role (family-specific variants first), never reusing a name within a contract."""
    used: set[str] = set(taken or ()) | RESERVED
    out: dict[str, str] = {}
    suffix = "_"
    for key in ROLES:
        role, _, fam = key.partition(":")
        if fam and fam != family:
            continue
        if role in out and not fam:
            continue
        choices = [c for c in ROLES[key] if c not in used or role == "token_maps"]
        name = rng.choice(choices) if choices else rng.choice(ROLES[key]) + suffix
        if role in PAIRS:  # two names drawn together (owner + its modifier, token balances + allowances)
            first, second = name.split(":")
            out[PAIRS[role][0]], out[PAIRS[role][1]] = first, second
            used.update((first, second))
            continue
        out[role] = name
        used.add(name)
    prefix = rng.choice(PREFIXES)
    out["contract"] = prefix + rng.choice(CONTRACT_SUFFIXES[family])
    out["token_symbol"] = (prefix[:3] + rng.choice("XYZNTK")).upper()
    out["base"] = rng.choice(("Ownable", "Owned", "Administered", "Controlled"))
    out["lib"] = "SafeMath"
    return out
