#!/usr/bin/env Rscript
# Multiple-imputation fixture: pooled (Rubin's rules) estimates from mice on tests/R/mi_data.csv,
# plus the complete-case estimates of the same models for comparison.
#
# Imputation: mice(m = 50, method = "norm" (Bayesian linear regression), seed = 20261126,
# maxit = 5 (mice's default)). Both incomplete variables (end, cost) are imputed from
# frame_shares, teaming, stratum (factor), start and pre_cost only: end and cost do not predict
# each other and `family` (an id) predicts nothing. Analysis models, fitted in every completed
# data set with with() and pooled with pool() (Barnard-Rubin df, dfcom = residual df):
#   end  ~ frame_shares + teaming + start    + factor(stratum)   -> model "mi_end"
#   cost ~ frame_shares + teaming + pre_cost + factor(stratum)   -> model "mi_cost"
# Complete-case OLS of the same models (classical lm SEs, residual df) -> "cc_end", "cc_cost".
#
# mice's random draws cannot be reproduced outside R, so a Python implementation should match the
# pooled estimates only within Monte-Carlo error: the columns b (between-imputation variance)
# and m give it, e.g. |estimate_py - estimate| < 4 * sqrt(b * (1/m_py + 1/m)) roughly.
#
# Usage (from the repository root):
#   python3 tests/R/make_mi_data.py && Rscript tests/R/mice_fixtures.R
#   Rscript tests/R/mice_fixtures.R [in.csv] [out.csv]
# Needs: r-base-core r-cran-mice (Debian packages). See tests/R/README.md.

suppressPackageStartupMessages(library(mice))

args <- commandArgs(trailingOnly = TRUE)
here <- "tests/R"
inp <- if (length(args) >= 1) args[1] else file.path(here, "mi_data.csv")
out <- if (length(args) >= 2) args[2] else file.path(here, "mice_expected.csv")

SEED <- 20261126
M <- 50

d <- read.csv(inp, stringsAsFactors = FALSE, encoding = "UTF-8")
d$stratum <- factor(d$stratum)
stopifnot(nrow(d) == 200, sum(is.na(d$end)) == 45, sum(is.na(d$cost)) == 20)

pred <- make.predictorMatrix(d)
pred[, ] <- 0
predictors <- c("frame_shares", "teaming", "stratum", "start", "pre_cost")
pred[c("end", "cost"), predictors] <- 1

imp <- mice(d, m = M, method = "norm", predictorMatrix = pred, seed = SEED, printFlag = FALSE)
stopifnot(all(imp$method[c("end", "cost")] == "norm"), !anyNA(complete(imp, 1)))

f_end <- end ~ frame_shares + teaming + start + factor(stratum)
f_cost <- cost ~ frame_shares + teaming + pre_cost + factor(stratum)

pooled <- function(expr_fit, model) {
  p <- pool(expr_fit)$pooled
  data.frame(model = model, term = as.character(p$term), estimate = p$estimate,
             std_error = sqrt(p$t), df = p$df, fmi = p$fmi, m = p$m,
             ubar = p$ubar, b = p$b, riv = p$riv, lambda = p$lambda, dfcom = p$dfcom,
             n_obs = nrow(d), stringsAsFactors = FALSE)
}
complete_case <- function(fo, model) {
  fit <- lm(fo, data = d)  # lm drops the incomplete rows
  s <- summary(fit)$coefficients
  data.frame(model = model, term = rownames(s), estimate = s[, "Estimate"],
             std_error = s[, "Std. Error"], df = fit$df.residual, fmi = NA, m = NA,
             ubar = NA, b = NA, riv = NA, lambda = NA, dfcom = NA,
             n_obs = nobs(fit), stringsAsFactors = FALSE)
}

res <- rbind(
  pooled(with(imp, lm(end ~ frame_shares + teaming + start + factor(stratum))), "mi_end"),
  pooled(with(imp, lm(cost ~ frame_shares + teaming + pre_cost + factor(stratum))), "mi_cost"),
  complete_case(f_end, "cc_end"),
  complete_case(f_cost, "cc_cost")
)
rownames(res) <- NULL

res_txt <- res
for (col in c("estimate", "std_error", "df", "fmi", "ubar", "b", "riv", "lambda", "dfcom")) {
  res_txt[[col]] <- ifelse(is.na(res[[col]]), NA, sprintf("%.17g", res[[col]]))
}
write.csv(res_txt, out, row.names = FALSE, quote = TRUE, na = "", fileEncoding = "UTF-8")
cat(sprintf("wrote %s (%d rows) with mice %s, %s\n", out, nrow(res), packageVersion("mice"),
            R.version.string))
print(res[res$term %in% c("frame_shares", "teaming", "start", "pre_cost"),
          c("model", "term", "estimate", "std_error", "df", "fmi")], digits = 4, row.names = FALSE)
