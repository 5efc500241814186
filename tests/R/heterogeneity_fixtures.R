#!/usr/bin/env Rscript
# Expected subgroup effects and omnibus heterogeneity tests for hbeval.stats.heterogeneity,
# computed with estimatr::lm_robust(se_type = "HC2") and car::linearHypothesis (HC2, F test)
# on tests/R/fixture_data.csv.
#
# Model, for a margin M (frame_shares or teaming), the other factor O and a subgroup variable g:
#   end ~ M:g + O + start + g + stratum        (M:g = one column per level: the effect within it)
# Tests that the within-level effects are equal: the naive F = Wald / (G - 1) on (G - 1, n - rank) df
# (car::linearHypothesis with sandwich's HC2), and the HTZ test of clubSandwich::Wald_test (CR2 with
# singleton clusters = HC2; Pustejovsky & Tipton 2018): statistic_htz on (df_num, df_den_htz).
#
# Subgroup variables: service_line (the second part of `stratum`: aliased with the strata, so the
# level main effects drop out) and wgroup (tertiles of the analytic weight `w`: not aliased).
#
# Usage (from the repository root):
#   Rscript tests/R/heterogeneity_fixtures.R [tests/R/fixture_data.csv] [tests/R/heterogeneity_expected.csv]
# Needs: r-base-core, r-cran-estimatr, r-cran-car, r-cran-sandwich, r-cran-clubsandwich (Debian packages).

suppressPackageStartupMessages({
  library(estimatr)
  library(car)
  library(sandwich)
  library(clubSandwich)
})

args <- commandArgs(trailingOnly = TRUE)
here <- "tests/R"
inp <- if (length(args) >= 1) args[1] else file.path(here, "fixture_data.csv")
out <- if (length(args) >= 2) args[2] else file.path(here, "heterogeneity_expected.csv")

d <- read.csv(inp, stringsAsFactors = FALSE, encoding = "UTF-8")
d$stratum <- factor(d$stratum)
d$service_line <- factor(sub(".*\\|", "", as.character(d$stratum)))
d$wgroup <- factor(cut(d$w, quantile(d$w, c(0, 1 / 3, 2 / 3, 1)), include.lowest = TRUE, labels = c("low", "mid", "high")))

rows <- list()
for (var in c("service_line", "wgroup")) {
  for (margin in c("frame_shares", "teaming")) {
    other <- setdiff(c("frame_shares", "teaming"), margin)
    d$M <- d[[margin]]
    d$O <- d[[other]]
    d$g <- d[[var]]
    f <- end ~ M:g + O + start + g + stratum
    fit <- lm_robust(f, data = d, se_type = "HC2")
    lev <- levels(d$g)
    terms <- paste0("M:g", lev)
    for (k in seq_along(lev)) {
      rows[[length(rows) + 1]] <- data.frame(variable = var, margin = margin, level = lev[k],
        estimate = unname(coef(fit)[terms[k]]), std_error = unname(fit$std.error[terms[k]]),
        df = unname(fit$df[terms[k]]), statistic = NA, df_num = NA, df_den = NA, p_value = NA,
        statistic_htz = NA, df_den_htz = NA, p_value_htz = NA)
    }
    # the omnibus test by hand from lm_robust's HC2 covariance ...
    b <- coef(fit)[terms]
    V <- vcov(fit)[terms, terms]
    R <- cbind(-1, diag(length(lev) - 1))
    rb <- R %*% b
    W <- as.numeric(t(rb) %*% solve(R %*% V %*% t(R)) %*% rb)
    q <- length(lev) - 1
    df2 <- unname(fit$df[terms[1]])
    # ... and by car::linearHypothesis on the lm fit with sandwich's HC2 (they must agree)
    ols <- lm(f, data = d)
    hyp <- paste0("M:g", lev[-1], " - M:g", lev[1], " = 0")
    lh <- linearHypothesis(ols, hyp, vcov. = vcovHC(ols, type = "HC2"), test = "F", singular.ok = TRUE)
    if (abs(lh$F[2] - W / q) > 1e-8 * W / q) stop("car and lm_robust disagree: ", lh$F[2], " vs ", W / q)
    # HTZ: the same fit without the aliased columns (clubSandwich needs a full-rank lm)
    X2 <- model.matrix(ols)[, !is.na(coef(ols))]
    y2 <- d$end
    ols2 <- lm(y2 ~ 0 + X2)
    b2 <- coef(ols2)
    C <- matrix(0, length(lev) - 1, length(b2), dimnames = list(NULL, names(b2)))
    bt <- paste0("X2", terms)
    for (k in 2:length(lev)) {
      C[k - 1, bt[1]] <- -1
      C[k - 1, bt[k]] <- 1
    }
    htz <- Wald_test(ols2, constraints = C, vcov = vcovCR(ols2, cluster = seq_len(nrow(d)), type = "CR2"), test = "HTZ")
    rows[[length(rows) + 1]] <- data.frame(variable = var, margin = margin, level = "(heterogeneity)",
      estimate = NA, std_error = NA, df = NA, statistic = lh$F[2], df_num = lh$Df[2], df_den = lh$Res.Df[2],
      p_value = lh$`Pr(>F)`[2], statistic_htz = htz$Fstat, df_den_htz = htz$df_denom, p_value_htz = htz$p_val)
  }
}
res <- do.call(rbind, rows)
num <- c("estimate", "std_error", "df", "statistic", "df_num", "df_den", "p_value", "statistic_htz", "df_den_htz",
         "p_value_htz")
for (c in num) res[[c]] <- ifelse(is.na(res[[c]]), "", trimws(formatC(as.numeric(res[[c]]), digits = 17, format = "g")))
write.csv(res, out, row.names = FALSE, quote = FALSE)
cat("wrote", out, "(", nrow(res), "rows ) with R", R.version.string, ", estimatr", as.character(packageVersion("estimatr")),
    ", car", as.character(packageVersion("car")), ", sandwich", as.character(packageVersion("sandwich")),
    ", clubSandwich", as.character(packageVersion("clubSandwich")), "\n")
