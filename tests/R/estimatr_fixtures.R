#!/usr/bin/env Rscript
# Expected estimates and HC2 standard errors for hbeval's randomised-contrast estimator,
# computed with estimatr::lm_robust(se_type = "HC2") on tests/R/fixture_data.csv.
#
# Usage (from the repository root):
#   Rscript tests/R/estimatr_fixtures.R [tests/R/fixture_data.csv] [tests/R/estimatr_expected.csv]
# Needs: r-base-core, r-cran-estimatr (Debian packages). See tests/R/README.md.

suppressPackageStartupMessages(library(estimatr))

args <- commandArgs(trailingOnly = TRUE)
here <- "tests/R"
inp <- if (length(args) >= 1) args[1] else file.path(here, "fixture_data.csv")
out <- if (length(args) >= 2) args[2] else file.path(here, "estimatr_expected.csv")

d <- read.csv(inp, stringsAsFactors = FALSE, encoding = "UTF-8")
d$stratum <- factor(d$stratum)
d$cell <- 2 * d$frame_shares + d$teaming
d$c1 <- as.numeric(d$cell == 1)
d$c2 <- as.numeric(d$cell == 2)
d$c3 <- as.numeric(d$cell == 3)
d$start_c <- d$start - mean(d$start)

rows <- list()
add <- function(model, term, est, se, df) {
  rows[[length(rows) + 1]] <<- data.frame(model = model, term = term, estimate = est, std_error = se, df = df)
}
terms_of <- function(fit, model, terms) {
  for (t in terms) add(model, t, unname(coef(fit)[t]), unname(fit$std.error[t]), unname(fit$df[t]))
}
combo <- function(fit, model, name, w) {
  b <- coef(fit)[names(w)]
  V <- vcov(fit)[names(w), names(w)]
  add(model, name, sum(w * b), sqrt(as.numeric(t(w) %*% V %*% w)), unname(fit$df[names(w)[1]]))
}

# 1. primary specification: main effects
m1 <- lm_robust(end ~ frame_shares + teaming + start + stratum, data = d, se_type = "HC2")
terms_of(m1, "main", c("frame_shares", "teaming", "start"))

# 2. interaction model (and the cell contrasts from it)
m2 <- lm_robust(end ~ frame_shares * teaming + start + stratum, data = d, se_type = "HC2")
terms_of(m2, "interaction", c("frame_shares", "teaming", "frame_shares:teaming", "start"))
combo(m2, "interaction", "cell:frame_shares/teaming", c(frame_shares = 1, teaming = 1, "frame_shares:teaming" = 1))

# 3. the same with stratum fixed effects absorbed (estimatr's fixed_effects): same numbers
m3 <- lm_robust(end ~ frame_shares + teaming + start, fixed_effects = ~stratum, data = d, se_type = "HC2")
terms_of(m3, "main_fe", c("frame_shares", "teaming", "start"))

# 4. no baseline (process outcomes, satisfaction)
m4 <- lm_robust(end ~ frame_shares + teaming + stratum, data = d, se_type = "HC2")
terms_of(m4, "main_no_baseline", c("frame_shares", "teaming"))

# 5. weighted HC2 (the IPW sensitivity estimate uses it)
m5 <- lm_robust(end ~ frame_shares + teaming + start + stratum, data = d, weights = w, se_type = "HC2")
terms_of(m5, "main_weighted", c("frame_shares", "teaming", "start"))

# 6. risk difference: linear probability model of a 0/1 outcome
m6 <- lm_robust(event ~ frame_shares + teaming + stratum, data = d, se_type = "HC2")
terms_of(m6, "risk_difference", c("frame_shares", "teaming"))

# 7. Lin-style: cells fully interacted with the centred start score, stratum FE
m7 <- lm_robust(end ~ c1 + c2 + c3 + start_c + c1:start_c + c2:start_c + c3:start_c + stratum, data = d, se_type = "HC2")
pT <- mean(d$teaming)
pF <- mean(d$frame_shares)
terms_of(m7, "lin", c("c1", "c2", "c3"))
combo(m7, "lin", "frame_shares", c(c2 = 1 - pT, c3 = pT, c1 = -pT))
combo(m7, "lin", "teaming", c(c1 = 1 - pF, c3 = pF, c2 = -pF))
combo(m7, "lin", "frame_shares:teaming", c(c3 = 1, c1 = -1, c2 = -1))

res <- do.call(rbind, rows)
# full precision for the fixture
res_txt <- res
res_txt$estimate <- sprintf("%.17g", res$estimate)
res_txt$std_error <- sprintf("%.17g", res$std_error)
write.csv(res_txt, out, row.names = FALSE, quote = TRUE, fileEncoding = "UTF-8")
cat(sprintf("wrote %s (%d rows) with estimatr %s, %s\n", out, nrow(res), packageVersion("estimatr"), R.version.string))
