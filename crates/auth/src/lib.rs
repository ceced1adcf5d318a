//! Bearer tokens for anju: HS256 JWT claims with role and site scope.
